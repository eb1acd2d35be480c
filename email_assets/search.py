"""Hybrid search: dense chunks and lexical messages, fused by reciprocal rank, one hit per message.

Dense vectors find a paraphrase, words find a command line, a name or a sentence quoted
word for word; neither alone ranks mail well (see the README's retrieval figures). Each
side ranks messages (dense: by their best chunk), reciprocal rank fusion merges the lists
without having to make their scores comparable, each part weighted by what its side
knows (`ranking.py`), and each hit shows a snippet of the message's chunk closest to the
query. `search_chunks` keeps the dense chunk list for `--chunks`; `similar_messages` ranks
by meaning against a stored message instead of a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from email_assets import settings
from email_assets.embedding import Embedder, embedder_from_spec
from email_assets.ranking import (
    DenseEvidence,
    Fused,
    WordEvidence,
    dense_weight,
    evidence_weight,
    fuse_evidence,
)
from email_assets.storage.database import engine_for
from email_assets.storage.lexical import LexicalIndex, MessageFilter, query_words
from email_assets.storage.tables import chunks, message_locations, parsed_emails
from email_assets.storage.vectors import VectorStore

CANDIDATES = 100  # per side, before fusion
SNIPPET_CHARS = 200
_SNIPPET_MIN_WORD = 3  # shorter query words (a, of, to) do not decide where a snippet is centred
_STEM = 5  # letters compared when centring a snippet: a crude stem, enough to find the passage
_IN_FILTER_LIMIT = 5000  # above this many allowed messages, filter dense hits after the query


@dataclass(frozen=True)
class SearchContext:
    """What a search reads: the configured embedder, its Chroma collection, the tables."""

    embedder: Embedder
    vectors: VectorStore
    database_url: str

    @classmethod
    def from_settings(cls) -> SearchContext:
        embedder = embedder_from_spec(settings.embedder_spec())
        return cls(embedder, VectorStore(settings.chroma_location(), embedder.model_name), settings.database_url())


def _chroma_where(where: MessageFilter, allowed: set[str] | None) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if where.account:
        clauses.append({"account": where.account})
    if where.from_address:
        clauses.append({"from_address": where.from_address.lower()})
    if where.since:
        clauses.append({"date_ts": {"$gte": where.since_ts()}})
    if where.until:
        clauses.append({"date_ts": {"$lt": where.until_ts()}})
    if where.flagged is not None:
        clauses.append({"flagged": where.flagged})
    if where.seen is not None:
        clauses.append({"seen": where.seen})
    if allowed is not None and len(allowed) <= _IN_FILTER_LIMIT:
        clauses.append({"message_key": {"$in": sorted(allowed)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _body(hit_text: str, metadata: dict[str, Any]) -> str:
    """The chunk without the context line it was embedded with."""
    return hit_text[int(metadata.get("body_offset") or 0) :]


def _dense_hits(
    context: SearchContext, query_vector: list[float], n: int, where: MessageFilter, allowed: set[str] | None
) -> list[dict[str, Any]]:
    if allowed is not None and not allowed:
        return []
    hits = context.vectors.query(query_vector, n, _chroma_where(where, allowed))
    if allowed is not None and len(allowed) > _IN_FILTER_LIMIT:
        hits = [hit for hit in hits if (hit["metadata"] or {}).get("message_key") in allowed]
    return hits


def _chunk_result(hit: dict[str, Any]) -> dict[str, Any]:
    metadata = hit["metadata"] or {}
    return {
        "chunk_id": hit["chunk_id"],
        "score": round(1.0 - float(hit["distance"]), 4),
        "account": metadata.get("account"),
        "message_id": metadata.get("message_id"),
        "message_key": metadata.get("message_key"),
        "subject": metadata.get("subject"),
        "from": metadata.get("from_address"),
        "date": metadata.get("date"),
        "flagged": bool(metadata.get("flagged")),
        "unread": not metadata.get("seen", False),
        "text": _body(hit["text"], metadata),
    }


def _needs_table_filter(where: MessageFilter) -> bool:
    return where.folder is not None or where.has_attachment is not None


def search_chunks(
    text: str, k: int = 5, where: MessageFilter | None = None, context: SearchContext | None = None
) -> list[dict[str, Any]]:
    """The `k` chunks nearest to `text`, as the vector store ranks them."""
    where = where or MessageFilter()
    context = context or SearchContext.from_settings()
    if context.vectors.count() == 0:
        return []
    allowed = LexicalIndex(context.database_url).allowed_keys(where) if _needs_table_filter(where) else None
    query_vector = context.embedder.embed([text])[0]
    return [_chunk_result(hit) for hit in _dense_hits(context, query_vector, k, where, allowed)]


@dataclass(frozen=True)
class Ranking:
    """A search's fused ranking, the best dense chunk seen per message, and the query vector."""

    fused: list[Fused]
    best_chunk: dict[str, dict[str, Any]]
    query_vector: list[float]


def _dense_side(hits: list[dict[str, Any]]) -> tuple[list[tuple[str, DenseEvidence]], dict[str, dict[str, Any]]]:
    """Messages in the order of their best chunk among the nearest chunks."""
    best: dict[str, dict[str, Any]] = {}
    side: list[tuple[str, DenseEvidence]] = []
    top = 1.0 - float(hits[0]["distance"]) if hits else 0.0
    for hit in hits:
        key = (hit["metadata"] or {}).get("message_key")
        if key and key not in best:
            best[key] = hit
            cosine = 1.0 - float(hit["distance"])
            weight = round(dense_weight(cosine, top), 6)
            side.append((key, DenseEvidence(len(side) + 1, round(cosine, 6), hit["chunk_id"], weight)))
    return side, best


def _word_side(lexical: LexicalIndex, text: str, hits: list[tuple[str, float]]) -> list[tuple[str, WordEvidence]]:
    """BM25's list, each hit weighted by the IDF of the query words it actually holds."""
    stats = lexical.term_statistics(text, [key for key, _score in hits])
    known_idf = sum(stats.idf(word) for word, frequency in stats.frequencies.items() if frequency)
    side = []
    for rank, (key, score) in enumerate(hits, start=1):
        terms = tuple(stats.matched.get(key, ()))
        weight = evidence_weight([stats.idf(word) for word in terms], known_idf, stats.rarest_idf())
        side.append((key, WordEvidence(rank, round(score, 6), terms, round(weight, 6))))
    return side


def rank_messages(text: str, where: MessageFilter, context: SearchContext, candidates: int = CANDIDATES) -> Ranking:
    """The fused message ranking with each side's evidence, as `search` and `--explain` use it."""
    lexical = LexicalIndex(context.database_url)
    allowed = lexical.allowed_keys(where) if _needs_table_filter(where) else None
    query_vector = context.embedder.embed([text])[0]
    dense_hits = _dense_hits(context, query_vector, candidates, where, allowed) if context.vectors.count() else []
    dense, best_chunk = _dense_side(dense_hits)
    words = _word_side(lexical, text, lexical.search(text, candidates, where))
    phrase = [key for key, _score in lexical.search_phrase(text, candidates, where)]
    return Ranking(fuse_evidence(dense, words, phrase), best_chunk, query_vector)


def _closest_chunks(context: SearchContext, keys: list[str], query_vector: list[float]) -> dict[str, dict[str, Any]]:
    """For messages found by words alone: their chunk nearest to the query, from Chroma."""
    if not keys:
        return {}
    with engine_for(context.database_url).connect() as connection:
        rows = connection.execute(
            sa.select(chunks.c.chunk_id, chunks.c.message_key).where(
                chunks.c.message_key.in_(keys), chunks.c.collection == context.vectors.collection_name
            )
        ).all()
    if not rows:
        return {}
    stored = context.vectors.get([chunk for chunk, _key in rows])
    query = np.asarray(query_vector, dtype=np.float32)
    closest: dict[str, dict[str, Any]] = {}
    for chunk, document, metadata, embedding in zip(
        stored["ids"], stored["documents"], stored["metadatas"], stored["embeddings"], strict=True
    ):
        similarity = float(np.dot(query, np.asarray(embedding, dtype=np.float32)))
        key = (metadata or {}).get("message_key")
        if key and (key not in closest or similarity > 1.0 - closest[key]["distance"]):
            closest[key] = {"chunk_id": chunk, "text": document, "metadata": metadata, "distance": 1.0 - similarity}
    return closest


def _message_fields(database_url: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    with engine_for(database_url).connect() as connection:
        parsed = connection.execute(
            sa.select(parsed_emails.c.message_key, parsed_emails.c.thread_id, parsed_emails.c.attachments).where(
                parsed_emails.c.message_key.in_(keys)
            )
        ).mappings()
        fields = {
            row["message_key"]: {"thread_id": row["thread_id"], "attachments": len(row["attachments"] or [])}
            for row in parsed
        }
        for key, folder in connection.execute(
            sa.select(message_locations.c.message_key, message_locations.c.folder)
            .where(message_locations.c.message_key.in_(keys))
            .distinct()
        ):
            fields.setdefault(key, {}).setdefault("folders", []).append(folder)
    return fields


def explanation(position: int, item: Fused) -> dict[str, Any]:
    """Why a message ranked where it did, read off the very `Fused` value it was sorted by."""
    dense, words = item.dense, item.words
    return {
        "rank": position,
        "fused_score": round(item.score, 6),
        "dense": None
        if dense is None
        else {
            "rank": dense.rank,
            "cosine": dense.score,
            "weight": dense.weight,
            "chunk_id": dense.chunk_id,
            "part": round(item.parts["dense"], 6),
        },
        "words": None
        if words is None
        else {
            "rank": words.rank,
            "bm25": words.score,
            "terms": list(words.terms),
            "weight": words.weight,
            "part": round(item.parts["words"], 6),
        },
        "phrase": None
        if item.phrase_rank is None
        else {"rank": item.phrase_rank, "part": round(item.parts["phrase"], 6)},
    }


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of `text` around its densest run of query words, cut at word
    boundaries, with an ellipsis where text was left out on either side.

    Words are compared by their first letters so "rebuilding" finds "rebuild"; without any
    query word the chunk's opening is shown (the chunk is already the passage nearest in meaning)."""
    words = text.split()
    if not words:
        return ""
    wanted = {word[:_STEM] for word in query_words(query) if len(word) >= _SNIPPET_MIN_WORD}
    hits = {index for index, word in enumerate(words) if _bare(word) and _bare(word)[:_STEM] in wanted}
    start = _best_window_start(words, sorted(hits), width)
    end, used = start, 0
    while end < len(words) and used + len(words[end]) + (1 if end > start else 0) <= width:
        used += len(words[end]) + (1 if end > start else 0)
        end += 1
    end = max(end, start + 1)
    shown = " ".join(words[start:end])
    if len(shown) > width:  # one word longer than the snippet (a URL, base64): cut, and say so
        return ("… " if start else "") + shown[:width] + " …"
    return ("… " if start else "") + shown + (" …" if end < len(words) else "")


def _bare(word: str) -> str:
    return "".join(character for character in word.lower() if character.isalnum())


def _best_window_start(words: list[str], hits: list[int], width: int) -> int:
    """The word index to start at: a little before the run holding the most query words."""
    if not hits:
        return 0
    found = set(hits)
    best, best_count = hits[0], 0
    for first in hits:
        used, count = 0, 0
        for index in range(first, len(words)):
            used += len(words[index]) + 1
            if used > width * 2 // 3:
                break
            count += index in found
        if count > best_count:
            best, best_count = first, count
    lead, start = 0, best
    while start > 0 and lead + len(words[start - 1]) + 1 <= width // 3:
        start -= 1
        lead += len(words[start]) + 1
    return start


def search_messages(
    text: str,
    k: int = 5,
    where: MessageFilter | None = None,
    context: SearchContext | None = None,
    explain: bool = False,
) -> list[dict[str, Any]]:
    """The `k` best messages for `text`, each with its chunk nearest to the query, a snippet
    centred on the query's words and, with `explain`, each side's part of its fused score."""
    where = where or MessageFilter()
    context = context or SearchContext.from_settings()
    ranking = rank_messages(text, where, context)
    top = ranking.fused[:k]
    keys = [item.key for item in top]
    best_chunk = dict(ranking.best_chunk)
    best_chunk.update(_closest_chunks(context, [key for key in keys if key not in best_chunk], ranking.query_vector))
    fields = _message_fields(context.database_url, keys)
    results = []
    for position, item in enumerate(top, start=1):
        hit = best_chunk.get(item.key)
        if hit is None:  # indexed for words but not (yet) embedded: not a result we can show
            continue
        result = _chunk_result(hit)
        extra = fields.get(item.key, {})
        result.update(
            rank=position,
            rank_score=round(item.score, 6),
            snippet=snippet(result["text"], text),
            thread_id=extra.get("thread_id"),
            folders=sorted(extra.get("folders", [])),
            attachments=extra.get("attachments", 0),
        )
        if explain:
            result["explain"] = explanation(position, item)
        results.append(result)
    return results


def group_by_thread(results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Results in rank order, each thread's messages gathered under its best one."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result.get("thread_id") or result["message_key"], []).append(result)
    return list(groups.values())


def _message_vector(context: SearchContext, key: str) -> list[float] | None:
    """The mean of a message's chunk vectors, normalised: what the whole message is about."""
    with engine_for(context.database_url).connect() as connection:
        ids = connection.execute(
            sa.select(chunks.c.chunk_id).where(
                chunks.c.message_key == key, chunks.c.collection == context.vectors.collection_name
            )
        ).scalars()
        ids = list(ids)
    if not ids:
        return None
    stored = context.vectors.get(ids, include=("embeddings",))
    if not len(stored["embeddings"]):
        return None
    mean = np.asarray(stored["embeddings"], dtype=np.float32).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm).tolist() if norm else None


def similar_messages(
    key: str,
    k: int = 5,
    where: MessageFilter | None = None,
    context: SearchContext | None = None,
    same_thread: bool = False,
) -> list[dict[str, Any]]:
    """The `k` messages nearest in meaning to stored message `key`, by their best chunk against
    the mean of its chunks; never itself, and none of its own thread unless `same_thread`
    (its replies quote it, so they would fill the list with what the reader already has)."""
    from email_assets.message_view import thread_keys

    where = where or MessageFilter()
    context = context or SearchContext.from_settings()
    vector = _message_vector(context, key)
    if vector is None:
        return []
    excluded = {key} if same_thread else set(thread_keys(context.database_url, key)) | {key}
    allowed = LexicalIndex(context.database_url).allowed_keys(where) if _needs_table_filter(where) else None
    hits = _dense_hits(context, vector, CANDIDATES + 20 * len(excluded), where, allowed)
    side, best = _dense_side([hit for hit in hits if (hit["metadata"] or {}).get("message_key") not in excluded])
    top = [candidate for candidate, _evidence in side[:k]]
    fields = _message_fields(context.database_url, top)
    results = []
    for candidate in top:
        result = _chunk_result(best[candidate])
        extra = fields.get(candidate, {})
        result.update(
            snippet=snippet(result["text"], ""),
            thread_id=extra.get("thread_id"),
            folders=sorted(extra.get("folders", [])),
            attachments=extra.get("attachments", 0),
        )
        results.append(result)
    return results
