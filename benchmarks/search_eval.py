"""`make bench` (search): retrieval quality on real mailing-list mail, the embedder, a cold search.

Corpus: 2,050 messages of the public linux-raid list (`benchmarks/data/`), written by
other people, heavily quoted, top-, bottom- and inline-posted. Two kinds of known-item
query, built the same way every run (seeded):
  * quoted: a line that a reply quotes (`>`) and that the original itself wrote;
    gold = the original, never the replies that repeat it;
  * below-quote: a line a reply wrote after a quote block, found in no other message's
    own text; gold = that reply (later replies may quote it: they are the distractors).
A message's own lines are those not `>`-quoted, not an attribution ("... wrote:") and not
below an Outlook "Original Message" or From:/Sent: block, all decided by this file's own
rules, not by the cleaner under test.
Systems, on the same corpus and queries:
  * ours: the pipeline (parse, clean, chunk, embed, index) and `search_messages`, the
    function behind `email-assets search`;
  * dense raw: the same model over each message's raw decoded body (chunked, exact
    nearest neighbours, best chunk per message): what a naive loader does;
  * bm25 raw: Okapi BM25 (k1 1.2, b 0.75) over the raw decoded bodies.
A third set, `paraphrase`, is the 362 hand-written queries of `data/paraphrase_queries.jsonl`
(`benchmarks/paraphrase_queries.py`): a description in other words, gold = the message
described. Every set is scored at message level and at thread level (the gold's thread
among the distinct threads of the ranking, by the manifest's `thread_id`).
`--store DIR` keeps the embedded eval store (and the naive dense system's vectors) in DIR
and reuses them on the next run: only the searches run again.
Then the local embedder (ONNX Runtime) against sentence-transformers on the same chunks
(interleaved repeats, medians), model load time of each in a fresh process, and a cold
`email-assets search` on the eval store.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARCHIVE = Path(__file__).resolve().parent / "data" / "linux-raid.tar.xz"
DAY = dt.datetime(2024, 1, 10, 12, tzinfo=dt.UTC)  # one partition: the eval has no date filter
ACCOUNT = "list"
_WORD = re.compile(r"\w+", re.UNICODE)
MIN_QUERY_WORDS = 8
MAX_QUERY_WORDS = 20


@dataclass
class Mail:
    name: str
    raw: bytes
    subject: str
    body: str  # decoded body as a naive loader sees it: text part, else HTML


@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    gold: str


def paraphrase_queries(names: set[str]) -> list[Query]:
    """The hand-written paraphrase set, restricted to golds in the loaded corpus."""
    from benchmarks.paraphrase_queries import load

    return [Query("paraphrase", r["query"], r["gold_file"]) for r in load() if r["gold_file"] in names]


def load_corpus(limit: int | None) -> tuple[list[Mail], dict[str, dict]]:
    from email_assets.mail.parsing import parse_message

    mails, manifest = [], {}
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            if not member.isfile():
                continue
            data = archive.extractfile(member).read()
            name = os.path.basename(member.name)
            if name == "manifest.jsonl":
                manifest = {row["file"]: row for row in map(json.loads, data.decode().splitlines())}
            elif name.endswith(".eml"):
                parsed = parse_message(data, DAY)
                mails.append(Mail(name, data, parsed.subject or "", parsed.text_body or parsed.html_body or ""))
    mails.sort(key=lambda mail: mail.name)
    return (mails[:limit] if limit else mails), manifest


def _collapse(line: str) -> str:
    return " ".join(line.split())


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


_UNMARKED_QUOTE = re.compile(r"^-{2,}\s*Original Message\s*-{2,}\s*$|^From: .+\n(Sent|Date): ", re.I | re.M)
_ATTRIBUTION = re.compile(r"(wrote|schrieb|écrit)\s*:\s*$", re.I)


def own_lines(body: str) -> list[str]:
    """The author's lines, as a reader would mark them: not `>`-quoted, not an attribution
    (one line or wrapped over two), not in the signature (below "-- "), and not below an
    Outlook "Original Message" / From:-Sent: block (whose original follows unmarked)."""
    marker = _UNMARKED_QUOTE.search(body)
    lines = (body[: marker.start()] if marker else body).splitlines()
    if "-- " in lines:
        lines = lines[: lines.index("-- ")]
    own = []
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        wrapped_attribution = line.startswith("On ") and _ATTRIBUTION.search(following)
        if line.strip() and not _is_quote(line) and not _ATTRIBUTION.search(line) and not wrapped_attribution:
            own.append(line)
    return own


def own_text(body: str) -> str:
    return "\n".join(_collapse(line) for line in own_lines(body))


def _query_text(line: str) -> str | None:
    words = line.split()
    return " ".join(words[:MAX_QUERY_WORDS]) if len(words) >= MIN_QUERY_WORDS and "http" not in line else None


def build_queries(mails: list[Mail], manifest: dict[str, dict], per_kind: int, seed: int) -> list[Query]:
    by_name = {mail.name: mail for mail in mails}
    own = {mail.name: own_text(mail.body) for mail in mails}
    all_own = "\0".join(own.values())
    quoted: dict[str, Query] = {}
    below: list[Query] = []
    for mail in mails:
        parent = (manifest.get(mail.name) or {}).get("parent_in_set")
        lines = mail.body.splitlines()
        if parent in by_name and parent not in quoted:
            for line in lines:
                text = _query_text(_collapse(line.lstrip().lstrip("> ")))
                if _is_quote(line) and text and not _ATTRIBUTION.search(text) and text in own[parent]:
                    quoted[parent] = Query("quoted", text, parent)
                    break
        seen_quote = False
        own_set = set(own_lines(mail.body))
        for line in lines:
            if _is_quote(line):
                seen_quote = True
                continue
            text = _query_text(_collapse(line))
            if seen_quote and text and line in own_set and all_own.count(text) == 1:
                below.append(Query("below-quote", text, mail.name))
                break
    rng = random.Random(seed)
    picked = []
    for pool in (sorted(quoted.values(), key=lambda q: q.gold), below):
        picked += rng.sample(pool, min(per_kind, len(pool)))
    return picked


# --- systems ----------------------------------------------------------------------------


def ingest_ours(mails: list[Mail], data_dir: Path) -> tuple[object, dict[str, str], float]:
    """The pipeline's four steps into an embedded store; returns (context, key -> file, seconds).

    A store already filled in `data_dir` (by an earlier `--store` run) is opened as it is:
    0 seconds, same chunks and vectors, so a ranking change is measured on the same index.
    An interrupted one is run again: the steps are idempotent and keep the vectors made."""
    from email_assets.credentials import SecretBox, generate_key
    from email_assets.embedding import LocalEmbedder
    from email_assets.mail.keys import content_sha256, message_key
    from email_assets.mail.records import FetchedMessage
    from email_assets.pipeline import clean_partition, embed_partition, parse_partition
    from email_assets.search import SearchContext
    from email_assets.storage.accounts import Account, AccountStore
    from email_assets.storage.messages import MessageStore
    from email_assets.storage.vectors import VectorStore

    url = f"sqlite:///{data_dir / 'email_assets.sqlite'}"
    names = {message_key(ACCOUNT, content_sha256(mail.raw)): mail.name for mail in mails}
    done = data_dir / "ingested"
    if done.is_file() and done.read_text() == str(len(mails)):
        embedder = LocalEmbedder()
        return SearchContext(embedder, VectorStore(str(data_dir / "chroma"), embedder.model_name), url), names, 0.0
    store = MessageStore(url)
    if not any(account.name == ACCOUNT for account in AccountStore(url).list()):  # else: an interrupted run
        key = generate_key()
        AccountStore(url).add(
            Account(ACCOUNT, "127.0.0.1", 993, "eval", "ssl", [], 1, None, SecretBox([key]).encrypt("not used"))
        )
        (data_dir / "fernet.key").write_text(key)
    started = time.perf_counter()
    fetched = [FetchedMessage("INBOX", 1, uid, DAY, (), len(m.raw), m.raw) for uid, m in enumerate(mails, start=1)]
    store.save_fetched(ACCOUNT, fetched, None)
    day = DAY.date().isoformat()
    parse_partition(store, ACCOUNT, day, None)
    clean_partition(store, ACCOUNT, day, None)
    embedder = LocalEmbedder()
    vectors = VectorStore(str(data_dir / "chroma"), embedder.model_name)
    embed_partition(store, vectors, embedder, ACCOUNT, day, None)
    seconds = time.perf_counter() - started
    done.write_text(str(len(mails)))
    return SearchContext(embedder, vectors, url), names, seconds


class DenseRaw:
    """The same model over raw decoded bodies, chunked, exact nearest neighbours."""

    def __init__(self, mails: list[Mail], embedder: object, cache: Path | None = None) -> None:
        from email_assets.mail.chunking import chunk_text

        self.embedder = embedder
        self.owners: list[str] = []
        texts: list[str] = []
        for mail in mails:
            for chunk in chunk_text(f"{mail.subject}\n\n{mail.body}", embedder.token_offsets, embedder.max_tokens):
                texts.append(chunk.text)
                self.owners.append(mail.name)
        started = time.perf_counter()
        if cache is not None and cache.is_file() and np.load(cache).shape[0] == len(texts):
            self.matrix = np.load(cache)
        else:
            self.matrix = np.asarray(embedder.embed(texts), dtype=np.float32)
            if cache is not None:
                np.save(cache, self.matrix)
        self.seconds = time.perf_counter() - started
        self.chunks = len(texts)

    def rank(self, query: str, k: int = 10) -> list[str]:
        scores = self.matrix @ np.asarray(self.embedder.embed([query])[0], dtype=np.float32)
        ranked: list[str] = []
        for index in np.argsort(-scores):
            if self.owners[index] not in ranked:
                ranked.append(self.owners[index])
                if len(ranked) == k:
                    break
        return ranked


class BM25Raw:
    def __init__(self, mails: list[Mail], k1: float = 1.2, b: float = 0.75) -> None:
        self.names = [mail.name for mail in mails]
        self.docs = [Counter(_WORD.findall(mail.body.lower())) for mail in mails]
        self.lengths = [sum(doc.values()) for doc in self.docs]
        self.average = sum(self.lengths) / max(1, len(self.lengths))
        frequency = Counter(word for doc in self.docs for word in doc)
        total = len(self.docs)
        self.idf = {word: math.log(1 + (total - n + 0.5) / (n + 0.5)) for word, n in frequency.items()}
        self.k1, self.b = k1, b

    def rank(self, query: str, k: int = 10) -> list[str]:
        words = set(_WORD.findall(query.lower()))
        scores = []
        for name, doc, length in zip(self.names, self.docs, self.lengths, strict=True):
            score = 0.0
            for word in words:
                tf = doc.get(word)
                if tf:
                    norm = tf + self.k1 * (1 - self.b + self.b * length / self.average)
                    score += self.idf[word] * tf * (self.k1 + 1) / norm
            if score:
                scores.append((score, name))
        return [name for _score, name in sorted(scores, key=lambda pair: (-pair[0], pair[1]))[:k]]


def _distinct(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def metrics(rankings: list[list[str]], queries: list[Query], threads: dict[str, str] | None = None) -> dict[str, float]:
    """R@1/5/10 and MRR@10 of the gold; with `threads` (file -> thread key), of the gold's
    thread among the ranking's distinct threads (any message of the right thread counts)."""
    if threads is not None:
        rankings = [_distinct([threads.get(name, name) for name in ranking]) for ranking in rankings]
        queries = [Query(q.kind, q.text, threads.get(q.gold, q.gold)) for q in queries]
    ranks = [
        ranking.index(q.gold) + 1 if q.gold in ranking else None for ranking, q in zip(rankings, queries, strict=True)
    ]
    count = max(1, len(ranks))
    return {
        "R@1": sum(1 for r in ranks if r and r <= 1) / count,
        "R@5": sum(1 for r in ranks if r and r <= 5) / count,
        "R@10": sum(1 for r in ranks if r and r <= 10) / count,
        "MRR@10": sum(1 / r for r in ranks if r and r <= 10) / count,
    }


def ann_losses(context: object, queries: list[Query]) -> tuple[int, int]:
    """Top-10 chunk hits Chroma's HNSW search missed against exact search over the same vectors."""
    stored = context.vectors.collection.get(include=["embeddings"])
    ids, matrix = stored["ids"], np.asarray(stored["embeddings"], dtype=np.float32)
    lost = total = 0
    for query in queries:
        vector = np.asarray(context.embedder.embed([query.text])[0], dtype=np.float32)
        exact = {ids[i] for i in np.argsort(-(matrix @ vector))[:10]}
        approximate = {hit["chunk_id"] for hit in context.vectors._approximate_query(vector.tolist(), 10, None)}
        lost += len(exact - approximate)
        total += len(exact)
    return lost, total


# --- embedder and latency ---------------------------------------------------------------


def embedder_race(texts: list[str], repeat: int) -> dict[str, float]:
    from sentence_transformers import SentenceTransformer

    from email_assets.local_model import OnnxSentenceEncoder, weights_directory

    ours, ours_int8 = OnnxSentenceEncoder(), OnnxSentenceEncoder(variant="int8")
    reference = SentenceTransformer(str(weights_directory()), device="cpu")
    contenders = {
        "ours": ours.encode,
        "ours int8": ours_int8.encode,
        "sentence-transformers": lambda batch: reference.encode(
            batch, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    vectors: dict[str, np.ndarray] = {}
    for encode in contenders.values():
        encode(texts[:8])
    for _ in range(repeat):
        for name, encode in contenders.items():
            started = time.perf_counter()
            vectors[name] = encode(texts)
            times[name].append(time.perf_counter() - started)
    figures = {name: len(texts) / statistics.median(values) for name, values in times.items()}
    for name in ("ours", "ours int8"):
        cosines = (vectors[name] * vectors["sentence-transformers"]).sum(axis=1)
        figures[f"{name} cosine_min"] = float(cosines.min())
        figures[f"{name} cosine_mean"] = float(cosines.mean())
    return figures


def print_race(race: dict[str, float], count: int, repeat: int) -> None:
    ratio = race["ours"] / race["sentence-transformers"]
    print(f"\nembedder, {count} chunks of this corpus, median of {repeat} interleaved runs (2 threads):")
    for name in ("ours", "ours int8", "sentence-transformers"):
        cosine = (
            f"  cosine to sentence-transformers min {race[name + ' cosine_min']:.5f}"
            f" mean {race[name + ' cosine_mean']:.5f}"
            if name != "sentence-transformers"
            else ""
        )
        print(f"  {name:22} {race[name]:8.1f} chunks/s{cosine}")
    met = ratio >= 1.4 and race["ours cosine_min"] >= 0.9999
    print(
        f"  ours / sentence-transformers {ratio:.2f}x (target >= 1.4x at cosine >= 0.9999): "
        + ("met" if met else "NOT met")
    )


def _process_seconds(code: str, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - started


def load_times(repeat: int) -> dict[str, float]:
    ours = "from email_assets.local_model import OnnxSentenceEncoder; OnnxSentenceEncoder().encode(['warm'])"
    reference = (
        "from sentence_transformers import SentenceTransformer; from email_assets.local_model import weights_directory;"
        "SentenceTransformer(str(weights_directory()), device='cpu').encode(['warm'])"
    )
    times: dict[str, list[float]] = {"ours": [], "sentence-transformers": []}
    for _ in range(repeat):
        times["ours"].append(_process_seconds(ours))
        times["sentence-transformers"].append(_process_seconds(reference))
    return {name: statistics.median(values) for name, values in times.items()}


def cold_search_seconds(data_dir: Path, query: str, repeat: int) -> float:
    executable = str(Path(sys.executable).parent / "email-assets")
    env = {
        **os.environ,
        "EMAIL_ASSETS_DATA_DIR": str(data_dir),
        "EMAIL_ASSETS_FERNET_KEYS": (data_dir / "fernet.key").read_text(),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("EMAIL_ASSETS_DATABASE_URL", None)
    env.pop("EMAIL_ASSETS_CHROMA", None)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = subprocess.run([executable, "search", query, "-k", "5"], capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - started)
        if result.returncode or not result.stdout.strip() or result.stderr:
            raise RuntimeError(f"cold search failed: {result.stderr.strip() or result.stdout.strip()}")
    return statistics.median(times)


RANKED_SYSTEMS = ("ours", "ours-dense", "ours-words", "dense-raw", "bm25-raw")
LABELS = {
    "ours": "ours (email-assets search)",
    "ours-dense": "  ours, dense side only",
    "ours-words": "  ours, words side only",
    "dense-raw": "dense raw (same model, raw bodies)",
    "bm25-raw": "bm25 raw (raw bodies)",
}
METRICS = ("R@1", "R@5", "R@10", "MRR@10")


def print_table(results: dict[str, dict[str, dict[str, float]]], kinds: list[str], level: str) -> None:
    """One row per system, R@1/5/10 and MRR@10 per query set."""
    print(f"\nretrieval, {level} level")
    print(f"{'system':38}" + "".join(f"{kind + ' ' + m:>20}" for kind in kinds for m in METRICS))
    for label, by_kind in results.items():
        print(f"{label:38}" + "".join(f"{by_kind[kind][m]:>20.3f}" for kind in kinds for m in METRICS))


def score_systems(
    systems: dict[str, object], queries: list[Query], kinds: list[str], threads: dict[str, str]
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """level -> system -> query set -> metric, every system ranking every query once."""
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {"message": {}, "thread": {}}
    for label, system in systems.items():
        rankings = [system(query.text) for query in queries]
        for level, thread_map in (("message", None), ("thread", threads)):
            results[level][label] = {
                kind: metrics(
                    [r for r, q in zip(rankings, queries, strict=True) if q.kind == kind],
                    [q for q in queries if q.kind == kind],
                    thread_map,
                )
                for kind in kinds
            }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, help="use only the first N messages (quick runs)")
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repeats for timings; medians count")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--embedder-only", action="store_true", help="only the embedder race")
    parser.add_argument("--store", type=Path, help="keep the eval store here and reuse it on later runs")
    parser.add_argument("--quality-only", action="store_true", help="retrieval figures only: no timings")
    parser.add_argument(
        "--systems", default=",".join(RANKED_SYSTEMS), help=f"comma-separated subset of {','.join(RANKED_SYSTEMS)}"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import sqlalchemy as sa

    from email_assets.search import search_chunks, search_messages
    from email_assets.storage.database import engine_for
    from email_assets.storage.lexical import LexicalIndex, MessageFilter
    from email_assets.storage.tables import chunks
    from email_assets.storage.vectors import EF_SEARCH, EXACT_SEARCH_MAX

    if args.embedder_only:  # the embedder race alone, on the corpus' raw bodies cut into chunks
        from email_assets.embedding import LocalEmbedder
        from email_assets.mail.chunking import chunk_text

        embedder = LocalEmbedder()
        texts = [c.text for mail in load_corpus(400)[0] for c in chunk_text(mail.body, embedder.token_offsets)][:1000]
        print_race(embedder_race(texts, args.repeat), len(texts), args.repeat)
        return 0
    mails, manifest = load_corpus(args.messages)
    queries = build_queries(mails, manifest, args.queries, args.seed)
    queries += paraphrase_queries({mail.name for mail in mails})
    threads = {name: row["thread_id"] for name, row in manifest.items()}
    kinds = sorted({query.kind for query in queries})
    print(
        f"corpus: {len(mails)} linux-raid messages; queries: "
        + ", ".join(f"{sum(q.kind == kind for q in queries)} {kind}" for kind in kinds)
    )
    with contextlib.ExitStack() as stack:
        if args.store:
            args.store.mkdir(parents=True, exist_ok=True, mode=0o700)
            data_dir = args.store
        else:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="email-assets-eval-")))
        context, names, ingest_seconds = ingest_ours(mails, data_dir)
        print(f"ours: pipeline over the corpus in {ingest_seconds:.1f}s ({context.vectors.count()} chunks)")
        lexical = LexicalIndex(context.database_url)

        def ours(query: str) -> list[str]:
            return [names[hit["message_key"]] for hit in search_messages(query, 10, MessageFilter(), context)]

        def ours_dense(query: str) -> list[str]:
            ranked: list[str] = []
            for hit in search_chunks(query, 60, MessageFilter(), context):
                if names[hit["message_key"]] not in ranked:
                    ranked.append(names[hit["message_key"]])
            return ranked[:10]

        def ours_words(query: str) -> list[str]:
            return [names[key] for key, _ in lexical.search(query, 10, MessageFilter())]

        wanted = args.systems.split(",")
        makers = {
            "ours": lambda: ours,
            "ours-dense": lambda: ours_dense,
            "ours-words": lambda: ours_words,
            "dense-raw": lambda: (
                DenseRaw(mails, context.embedder, data_dir / "dense_raw.npy" if args.store else None).rank
            ),
            "bm25-raw": lambda: BM25Raw(mails).rank,
        }
        systems = {LABELS[name]: makers[name]() for name in RANKED_SYSTEMS if name in wanted}
        results = score_systems(systems, queries, kinds, threads)
        print("(message level: gold = the message that wrote the line or that the paraphrase describes)")
        for level in ("message", "thread"):
            print_table(results[level], kinds, level)
        baselines = [LABELS[name] for name in ("dense-raw", "bm25-raw") if LABELS[name] in results["message"]]
        if LABELS["ours"] in results["message"] and baselines:
            ours_beats = all(
                results["message"][LABELS["ours"]][kind][metric]
                > max(results["message"][label][kind][metric] for label in baselines)
                for kind in kinds
                for metric in ("R@5", "MRR@10")
            )
            print(
                "target: ours beats the baselines on R@5 and MRR@10 for every query set: "
                + ("met" if ours_beats else "NOT met")
            )
        if args.quality_only:
            return 0
        lost, total = ann_losses(context, queries)
        print(
            f"\nChroma HNSW (ef_search {EF_SEARCH}) vs exact search, top-10 chunks: {lost} of {total} exact hits "
            f"missed; ours searches exactly up to {EXACT_SEARCH_MAX:,} vectors"
        )
        with engine_for(context.database_url).connect() as connection:
            texts = connection.execute(sa.select(chunks.c.text).order_by(chunks.c.chunk_id).limit(1000)).scalars().all()
        race = embedder_race(list(texts), args.repeat)
        print_race(race, len(texts), args.repeat)
        loads = load_times(args.repeat)
        print(
            f"model load in a fresh process (imports included): ours {loads['ours']:.2f}s, "
            f"sentence-transformers {loads['sentence-transformers']:.2f}s"
        )
        cold = cold_search_seconds(data_dir, queries[0].text, args.repeat)
        print(
            f"cold `email-assets search` on the eval store ({len(mails)} messages): {cold:.2f}s "
            f"(target < 3 s: {'met' if cold < 3 else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
