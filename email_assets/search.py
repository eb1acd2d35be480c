"""Hybrid search: dense chunks and lexical messages, fused by reciprocal rank, one hit per message.

Dense vectors find a paraphrase, words find a command line, a name or a sentence quoted
word for word; neither alone ranks mail well (see the README's retrieval figures). Each
side ranks messages (dense: by their best chunk), reciprocal rank fusion merges the two
lists without having to make their scores comparable, and each hit shows the message's
chunk closest to the query. `search_chunks` keeps the dense chunk list for `--chunks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from email_assets import settings
from email_assets.embedding import Embedder, embedder_from_spec
from email_assets.storage.database import engine_for
from email_assets.storage.lexical import LexicalIndex, MessageFilter
from email_assets.storage.tables import chunks, message_locations, parsed_emails
from email_assets.storage.vectors import VectorStore

RRF_K = 60  # the constant of Cormack et al.: damps the weight of the very first ranks
CANDIDATES = 100  # per side, before fusion
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


def fuse(rankings: list[list[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the lists an item appears in."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def rank_messages(
    text: str, where: MessageFilter, context: SearchContext, candidates: int = CANDIDATES
) -> tuple[list[tuple[str, float]], dict[str, dict[str, Any]], list[float]]:
    """Fused message ranking, the best dense chunk seen per message, and the query vector."""
    lexical = LexicalIndex(context.database_url)
    allowed = lexical.allowed_keys(where) if _needs_table_filter(where) else None
    query_vector = context.embedder.embed([text])[0]
    best_chunk: dict[str, dict[str, Any]] = {}
    dense_order: list[str] = []
    if context.vectors.count():
        for hit in _dense_hits(context, query_vector, candidates, where, allowed):
            key = (hit["metadata"] or {}).get("message_key")
            if key and key not in best_chunk:
                best_chunk[key] = hit
                dense_order.append(key)
    lexical_order = [key for key, _score in lexical.search(text, candidates, where)]
    phrase_order = [key for key, _score in lexical.search_phrase(text, candidates, where)]
    # A message holding the query as a phrase is ranked by both word lists: a sentence
    # quoted word for word outweighs a paraphrase that only sounds alike.
    return fuse([dense_order, lexical_order, phrase_order]), best_chunk, query_vector


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


def search_messages(
    text: str, k: int = 5, where: MessageFilter | None = None, context: SearchContext | None = None
) -> list[dict[str, Any]]:
    """The `k` best messages for `text`, each with its chunk nearest to the query."""
    where = where or MessageFilter()
    context = context or SearchContext.from_settings()
    ranked, best_chunk, query_vector = rank_messages(text, where, context)
    top = ranked[:k]
    keys = [key for key, _score in top]
    best_chunk.update(_closest_chunks(context, [key for key in keys if key not in best_chunk], query_vector))
    fields = _message_fields(context.database_url, keys)
    results = []
    for key, fused in top:
        hit = best_chunk.get(key)
        if hit is None:  # indexed for words but not (yet) embedded: not a result we can show
            continue
        result = _chunk_result(hit)
        extra = fields.get(key, {})
        result.update(
            rank_score=round(fused, 6),
            thread_id=extra.get("thread_id"),
            folders=sorted(extra.get("folders", [])),
            attachments=extra.get("attachments", 0),
        )
        results.append(result)
    return results


def group_by_thread(results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Results in rank order, each thread's messages gathered under its best one."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result.get("thread_id") or result["message_key"], []).append(result)
    return list(groups.values())
