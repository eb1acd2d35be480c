"""Deterministic identities, so every write anywhere is an idempotent upsert.

A message is identified by its account and its exact bytes: the same message copied to
two folders (or seen again after a UIDVALIDITY change) is one message with two
locations. A chunk is identified by its message, the embedding model and its text.
"""

from __future__ import annotations

import hashlib


def content_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def message_key(account: str, raw_sha256: str) -> str:
    return hashlib.sha256(f"{account}\0{raw_sha256}".encode()).hexdigest()[:32]


def chunk_id(message_key: str, embedding_model: str, text: str) -> str:
    digest = hashlib.sha256(f"{message_key}\0{embedding_model}\0{text}".encode()).hexdigest()
    return f"{message_key[:16]}-{digest[:24]}"
