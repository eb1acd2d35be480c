"""Semantic search over the Chroma collection of the configured embedding model."""

from __future__ import annotations

import datetime as dt
from typing import Any

from email_assets import settings
from email_assets.embedding import embedder_from_spec
from email_assets.storage.vectors import VectorStore


def _where(
    account: str | None, since: dt.date | None, until: dt.date | None, sender: str | None
) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if account:
        clauses.append({"account": account})
    if sender:
        clauses.append({"from_address": sender.lower()})
    if since:
        clauses.append({"date_ts": {"$gte": int(dt.datetime.combine(since, dt.time(), dt.UTC).timestamp())}})
    if until:  # inclusive: the whole of the `until` day
        end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC)
        clauses.append({"date_ts": {"$lt": int(end.timestamp())}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def search_chunks(
    text: str,
    k: int = 5,
    account: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    sender: str | None = None,
) -> list[dict[str, Any]]:
    embedder = embedder_from_spec(settings.embedder_spec())
    vectors = VectorStore(settings.chroma_location(), embedder.model_name)
    if vectors.count() == 0:
        return []
    query_vector = embedder.embed([text])[0]
    hits = vectors.query(query_vector, k, _where(account, since, until, sender))
    results = []
    for hit in hits:
        metadata = hit["metadata"] or {}
        results.append(
            {
                "chunk_id": hit["chunk_id"],
                "score": round(1.0 - float(hit["distance"]), 4),
                "account": metadata.get("account"),
                "message_id": metadata.get("message_id"),
                "message_key": metadata.get("message_key"),
                "subject": metadata.get("subject"),
                "from": metadata.get("from_address"),
                "date": metadata.get("date"),
                "text": hit["text"],
            }
        )
    return results
