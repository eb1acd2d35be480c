"""A chunk's whole lineage, from raw bytes to vector, for `email-assets trace`."""

from __future__ import annotations

import math
from typing import Any

from email_assets import settings
from email_assets.errors import UserError
from email_assets.mail.chunking import CHUNKER_VERSION
from email_assets.storage.messages import MessageStore
from email_assets.storage.vectors import VectorStore
from email_assets.terminal import safe_text

RAW_PREVIEW_BYTES = 2000
_BODY_KEYS = {"text", "quoted_text", "signature_text", "preview"}  # printed as lines: LF and TAB stay


def _escaped(value: Any, key: str = "") -> Any:
    """The lineage with every string made safe to print (terminal.py): subjects, folder
    names, bodies and defects all come from a sender or a server."""
    if isinstance(value, str):
        return safe_text(value, multiline=key in _BODY_KEYS)
    if isinstance(value, dict):
        return {name: _escaped(item, name) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(item, key) for item in value]
    return value


def trace_chunk(chunk_id: str) -> dict[str, Any]:
    store = MessageStore(settings.database_url())
    found = store.trace_chunk(chunk_id)
    if found is None:
        raise UserError(f"no chunk with id {chunk_id!r}: copy one from `email-assets search`")
    chunk = found["chunk"]
    raw = found["raw"] or {}
    vectors = VectorStore(settings.chroma_location(), chunk["embedding_model"])
    stored = vectors.get([chunk_id])
    vector = None
    if stored["ids"]:
        values = list(stored["embeddings"][0])
        vector = {
            "collection": vectors.collection_name,
            "dimensions": len(values),
            "norm": round(math.sqrt(sum(v * v for v in values)), 6),
            "head": [round(float(v), 6) for v in values[:8]],
            "metadata": stored["metadatas"][0],
        }
    raw_bytes: bytes = raw.get("raw") or b""
    parsed = found["parsed"] or {}
    cleaned = found["cleaned"] or {}
    return {
        "chunk_id": chunk_id,
        "account": chunk["account"],
        "day": chunk["day"],
        "message_key": chunk["message_key"],
        "locations": [
            {k: loc[k] for k in ("folder", "uidvalidity", "uid", "flags", "internaldate")} for loc in found["locations"]
        ],
        "raw": {
            "sha256": raw.get("sha256"),
            "size": raw.get("size"),
            "internaldate": raw.get("internaldate"),
            "fetched_by_run": raw.get("run_id"),
            "server_id": raw.get("server_id"),
            # Where the exact bytes are: the table, or a pack file beside a SQLite database.
            "stored_in": f"pack {raw['pack']} at {raw['pack_offset']}" if raw.get("pack") else "table",
            "bytes_readable": raw.get("raw") is not None,
            "preview": raw_bytes[:RAW_PREVIEW_BYTES].decode("utf-8", "replace"),
        },
        "parsed": {
            key: parsed.get(key)
            for key in (
                "message_id",
                "subject",
                "from_name",
                "from_address",
                "to_addresses",
                "cc_addresses",
                "date",
                "date_source",
                "in_reply_to",
                "references",
                "thread_id",
                "attachments",
                "defects",
                "parse_error",
                "code_version",
                "run_id",
            )
        },
        "cleaned": {
            key: cleaned.get(key)
            for key in ("source", "text", "quoted_text", "signature_text", "removed", "code_version", "run_id")
        },
        "chunk": {
            "index": chunk["chunk_index"],
            "text": chunk["text"],
            "token_count": chunk["token_count"],
            "chunker_version": CHUNKER_VERSION,
            "code_version": chunk["code_version"],
            "run_id": chunk["run_id"],
        },
        "embedding_model": chunk["embedding_model"],
        "vector": vector,
    }


def format_trace(lineage: dict[str, Any]) -> str:
    lineage = _escaped(lineage)
    parsed, cleaned, chunk, raw = lineage["parsed"], lineage["cleaned"], lineage["chunk"], lineage["raw"]
    lines = [
        f"chunk {lineage['chunk_id']}  (account {lineage['account']}, day {lineage['day']})",
        f"message key {lineage['message_key']}",
        "",
        "IMAP locations:",
        *[
            f"  {loc['folder']}  UIDVALIDITY {loc['uidvalidity']}  UID {loc['uid']}  flags [{loc['flags']}]  "
            f"INTERNALDATE {loc['internaldate']}"
            for loc in lineage["locations"]
        ],
        "",
        f"raw: {raw['size']} bytes, sha256 {raw['sha256']}, fetched by run {raw['fetched_by_run']}"
        + (f", server id {raw['server_id']}" if raw["server_id"] else "")
        + f", in {raw['stored_in']}"
        + ("" if raw["bytes_readable"] else " (BYTES MISSING: the pack is gone or cut)"),
        "",
        f"parsed ({parsed['code_version']}, run {parsed['run_id']}):",
        f"  Message-ID: {parsed['message_id']}",
        f"  Subject:    {parsed['subject']}",
        f"  From:       {parsed['from_name'] or ''} <{parsed['from_address'] or ''}>",
        f"  Date:       {parsed['date']} (from {parsed['date_source']})",
        f"  Thread:     {parsed['thread_id']}",
        f"  Defects:    {', '.join(parsed['defects'] or []) or 'none'}",
        "",
        f"cleaned ({cleaned['code_version']}, run {cleaned['run_id']}, from {cleaned['source']} body):",
        f"  removed: {cleaned['removed'] or 'nothing'}",
        *[f"  | {line}" for line in (cleaned["text"] or "").splitlines()[:20]],
    ]
    if cleaned["quoted_text"]:
        lines += ["  quoted reply removed:", *[f"  > {line}" for line in cleaned["quoted_text"].splitlines()[:8]]]
    if cleaned["signature_text"]:
        lines += ["  signature removed:", *[f"  ~ {line}" for line in cleaned["signature_text"].splitlines()[:5]]]
    vector = lineage["vector"]
    lines += [
        "",
        f"chunk #{chunk['index']} ({chunk['token_count']} tokens, {chunk['code_version']}, run {chunk['run_id']}):",
        *[f"  | {line}" for line in chunk["text"].splitlines()],
        "",
        f"embedding model: {lineage['embedding_model']}",
        f"vector: {vector['dimensions']} dims, norm {vector['norm']}, in {vector['collection']}"
        if vector
        else "vector: MISSING from Chroma (re-materialize email_embeddings for this partition)",
    ]
    return "\n".join(lines)
