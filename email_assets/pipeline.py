"""One function per asset: make a partition of a table equal to a function of its upstream.

Each step reuses rows whose inputs and code version have not changed, computes the rest,
and deletes rows whose upstream is gone, so running it again changes nothing and a
killed run is finished by the next one. Plain Python: the Dagster assets call these.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aioimaplib
import sqlalchemy as sa

from email_assets import crash_points
from email_assets.account_access import endpoint_of
from email_assets.embedding import Embedder
from email_assets.errors import AccountError
from email_assets.mail.chunking import CHUNKER_VERSION, cap, chunk_text, context_line
from email_assets.mail.cleaning import CLEANER_VERSION, clean_email
from email_assets.mail.command_reader import CommandError
from email_assets.mail.fetch_stream import FetchStreamError
from email_assets.mail.imap_connect import connect, without_secret
from email_assets.mail.imap_session import FETCH_BATCH_SIZE
from email_assets.mail.keys import chunk_id, content_sha256
from email_assets.mail.parsing import PARSER_VERSION, parse_message
from email_assets.mail.sync import SyncReport, sync_days
from email_assets.parallel import CoreMap
from email_assets.storage.accounts import Account
from email_assets.storage.connection_slots import ConnectionSlots
from email_assets.storage.lexical import LexicalIndex
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import chunks, cleaned_texts, parsed_emails
from email_assets.storage.vectors import VectorStore
from email_assets.storage.writer_lock import ALL_PARTITIONS, vector_writer

WRITE_BATCH = 200
WORK_WINDOW = 2000
METADATA_FIELD_CHARS = 300


@dataclass
class StepReport:
    """Numbers for one partition after one step; `messages` counts rows after the run."""

    messages: int = 0
    failures: int = 0
    processed: int = 0
    reused: int = 0
    removed: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def embedding_code_version(embedder: Embedder) -> str:
    return f"{CHUNKER_VERSION}+{embedder.model_name}"


def sync_account_days(
    account: Account,
    secret: str,
    store: MessageStore,
    days: list[dt.date],
    run_id: str | None,
    progress: Callable[[str], None] = lambda _message: None,
    batch_size: int = FETCH_BATCH_SIZE,
    keep_expunged: bool = False,
    slot_wait_seconds: float = 600,
) -> SyncReport:
    """Sync `days` of one account, holding one of its `max_connections` slots meanwhile."""

    async def run() -> SyncReport:
        async with connect(endpoint_of(account), account.username, secret, account.mechanism) as session:
            folders = account.folders or await session.default_folders()
            return await sync_days(
                session, store, account.name, folders, days, run_id, progress, batch_size, keep_expunged
            )

    try:
        with (
            ConnectionSlots(store.url).hold(account.name, account.max_connections, slot_wait_seconds),
            store.bulk_load(account.name),
        ):
            return asyncio.run(run())
    except (TimeoutError, aioimaplib.AioImapException, FetchStreamError, CommandError, OSError) as error:
        reason = without_secret(str(error).splitlines()[0] if str(error) else type(error).__name__, secret)
        raise AccountError(f"IMAP session with {endpoint_of(account).describe()} failed: {reason[:200]}") from None


def _parse_row(item: tuple[str, str, bytes, dt.datetime, str | None]) -> dict[str, Any]:
    key, sha256, raw, internaldate, server_thread_id = item
    row = parse_message(raw, internaldate).as_row()
    row.update(message_key=key, raw_sha256=sha256, code_version=PARSER_VERSION)
    if server_thread_id:  # the server's threading (Gmail's conversations) over our References guess
        row["thread_id"] = server_thread_id
    return row


def _clean_row(item: tuple[str, str | None, str | None, str]) -> dict[str, Any]:
    key, text_body, html_body, upstream_version = item
    try:
        result = clean_email(text_body, html_body)
        row = {
            "source": result.source,
            "text": result.text,
            "quoted_text": result.quoted_text,
            "signature_text": result.signature_text,
            "removed": result.removed,
        }
    except Exception as error:  # noqa: BLE001 - recorded per message, counted as a failure
        row = {
            "source": "error",
            "text": "",
            "quoted_text": "",
            "signature_text": "",
            "removed": {"error": f"{type(error).__name__}: {str(error)[:200]}"},
        }
    row.update(message_key=key, upstream_version=upstream_version, code_version=CLEANER_VERSION)
    return row


def _windows(items: Iterator[Any], size: int = WORK_WINDOW) -> Iterator[list[Any]]:
    """Bounded slices of a stream: a big day is processed, and held, a window at a time."""
    window: list[Any] = []
    for item in items:
        window.append(item)
        if len(window) >= size:
            yield window
            window = []
    if window:
        yield window


def _write(store: MessageStore, table: sa.Table, rows: list[dict[str, Any]], **common: Any) -> None:
    for row in rows:
        row.update(common)
    for start in range(0, len(rows), WRITE_BATCH):
        store.write_rows(table, rows[start : start + WRITE_BATCH])


def parse_partition(store: MessageStore, account: str, day: str, run_id: str | None) -> StepReport:
    report = StepReport()
    raw_keys = store.raw_summary(account, day)
    parsed_versions = store.versions_in_partition(parsed_emails, "code_version", account, day)
    stale = {key for key in raw_keys if parsed_versions.get(key) != PARSER_VERSION}
    report.reused = len(raw_keys) - len(stale)
    report.removed = store.delete_messages(parsed_emails, set(parsed_versions) - set(raw_keys))
    work = (
        (raw["message_key"], raw["sha256"], raw["raw"], raw["internaldate"], raw["server_thread_id"])
        for raw in store.raw_in_partition(account, day, only=stale)
    )
    with CoreMap() as cores:
        for window in _windows(work):
            rows = cores.map(_parse_row, window)
            _write(store, parsed_emails, rows, account=account, day=day, run_id=run_id)
            report.processed += len(rows)
    report.messages = store.count(parsed_emails, account, day)
    report.failures = store.count(parsed_emails, account, day, parsed_emails.c.parse_error.is_not(None))
    report.extra["with_defects"] = store.count(
        parsed_emails, account, day, sa.cast(parsed_emails.c.defects, sa.String) != "[]"
    )
    return report


def clean_partition(store: MessageStore, account: str, day: str, run_id: str | None) -> StepReport:
    report = StepReport()
    upstream = store.versions_in_partition(parsed_emails, "code_version", account, day)
    cleaned = store.versions_in_partition(cleaned_texts, ("code_version", "upstream_version"), account, day)
    stale = {key for key, version in upstream.items() if cleaned.get(key) != (CLEANER_VERSION, version)}
    report.reused = len(upstream) - len(stale)
    report.removed = store.delete_messages(cleaned_texts, set(cleaned) - set(upstream))
    work = (
        (row["message_key"], row["text_body"], row["html_body"], row["code_version"])
        for row in store.rows_in_partition(parsed_emails, account, day, keys=stale)
    )
    with CoreMap() as cores:
        for window in _windows(work):
            rows = cores.map(_clean_row, window)
            _write(store, cleaned_texts, rows, account=account, day=day, run_id=run_id)
            report.processed += len(rows)
    report.messages = store.count(cleaned_texts, account, day)
    report.failures = store.count(cleaned_texts, account, day, cleaned_texts.c.source == "error")
    report.extra["empty"] = store.count(cleaned_texts, account, day, cleaned_texts.c.text == "")
    return report


def _context(parsed: dict[str, Any]) -> str:
    """The line every chunk of a message starts with: its topic, its sender, its day."""
    name, address = parsed.get("from_name"), parsed.get("from_address")
    sender = f"{name} <{address}>" if name and address else (name or address)
    date = parsed.get("date")
    return context_line(parsed.get("subject"), sender, date.isoformat() if date else None)


def flag_metadata(flags: set[str]) -> dict[str, bool]:
    """The flags a search filters by, as booleans Chroma can match (`--flagged`, `--unread`)."""
    lowered = {flag.lower() for flag in flags}
    return {"flagged": "\\flagged" in lowered, "seen": "\\seen" in lowered, "answered": "\\answered" in lowered}


def _vector_metadata(
    parsed: dict[str, Any],
    flags: set[str],
    account: str,
    day: str,
    index: int,
    body_offset: int,
    model: str,
    code_version: str,
    run_id: str | None,
) -> dict[str, Any]:
    date = parsed.get("date")
    metadata = {  # header values capped: a 1 MB Subject must not be copied into every chunk
        "account": account,
        "day": day,
        "message_key": parsed["message_key"],
        "message_id": cap(parsed.get("message_id"), METADATA_FIELD_CHARS) or None,
        "subject": cap(parsed.get("subject"), METADATA_FIELD_CHARS) or None,
        "from_address": cap((parsed.get("from_address") or "").lower(), METADATA_FIELD_CHARS) or None,
        "from_name": cap(parsed.get("from_name"), METADATA_FIELD_CHARS) or None,
        "body_offset": body_offset,
        "date": date.isoformat() if date else None,
        "date_ts": int(date.timestamp()) if date else None,
        "chunk_index": index,
        "embedding_model": model,
        "code_version": code_version,
        "run_id": run_id,
        **flag_metadata(flags),
    }
    return {key: value for key, value in metadata.items() if value is not None}


def _search_document(parsed: dict[str, Any], text: str, account: str, day: str) -> dict[str, Any]:
    name, address = parsed.get("from_name"), (parsed.get("from_address") or "").lower()
    date = parsed.get("date")
    row = {
        "message_key": parsed["message_key"],
        "account": account,
        "day": day,
        "date_ts": int(date.timestamp()) if date else None,
        "from_address": cap(address, METADATA_FIELD_CHARS) or None,
        "has_attachment": bool(parsed.get("attachments")),
        "subject": cap(parsed.get("subject"), METADATA_FIELD_CHARS),
        "sender": cap(f"{name or ''} {address}".strip(), METADATA_FIELD_CHARS),
        "body": text,
    }
    row["content_hash"] = content_sha256(repr(sorted(row.items())).encode())
    return row


def _index_partition(
    index: LexicalIndex, texts: dict[str, str], parsed_rows: dict[str, dict[str, Any]], account: str, day: str
) -> int:
    """Make the partition's lexical documents equal to its messages with text; returns how many."""
    wanted = {
        key: _search_document(parsed_rows.get(key, {"message_key": key}), text, account, day)
        for key, text in texts.items()
        if text
    }
    indexed = index.documents_in_partition(account, day)
    index.delete(set(indexed) - set(wanted))
    index.replace([row for key, row in wanted.items() if indexed.get(key) != row["content_hash"]])
    return len(wanted)


def embed_partition(
    store: MessageStore,
    vectors: VectorStore,
    embedder: Embedder,
    account: str,
    day: str,
    run_id: str | None,
) -> StepReport:
    """Chunk, embed and index one partition, as the partition's only writer while it does."""
    with vector_writer(vectors, store.url, f"{account}|{day}"):
        report = StepReport()
        model = embedder.model_name
        code_version = embedding_code_version(embedder)
        texts = {
            row["message_key"]: row["text"]
            for row in store.rows_in_partition(cleaned_texts, account, day, columns=("message_key", "text"))
        }
        header_columns = ("message_key", "message_id", "subject", "from_address", "from_name", "date", "attachments")
        parsed_rows = {
            row["message_key"]: dict(row)
            for row in store.rows_in_partition(parsed_emails, account, day, columns=header_columns)
        }
        flags = store.flags_by_message(account, day)
        wanted: dict[str, dict[str, Any]] = {}
        for key, text in texts.items():
            parsed = parsed_rows.get(key, {"message_key": key})
            context = _context(parsed) if text else ""
            body_offset = len(context) + 1 if context else 0
            for chunk in chunk_text(text, embedder.token_offsets, embedder.max_tokens, context):
                identity = chunk_id(key, model, chunk.text)
                wanted[identity] = {
                    "chunk_id": identity,
                    "message_key": key,
                    "account": account,
                    "day": day,
                    "chunk_index": chunk.index,
                    "text": chunk.text,
                    "token_count": chunk.token_count,
                    "embedding_model": model,
                    "collection": vectors.collection_name,
                    "code_version": code_version,
                    "run_id": run_id,
                    "_metadata": _vector_metadata(
                        parsed,
                        flags.get(key, set()),
                        account,
                        day,
                        chunk.index,
                        body_offset,
                        model,
                        code_version,
                        run_id,
                    ),
                }
        # Orphans: whatever the partition holds, in the table or in Chroma, that is no longer wanted.
        in_table = store.chunk_ids_in_partition(account, day, vectors.collection_name)
        stored = vectors.collection.get(where={"$and": [{"account": account}, {"day": day}]}, include=["metadatas"])
        in_chroma = set(stored["ids"])
        orphans = (set(in_table) | in_chroma) - set(wanted)
        vectors.delete(sorted(orphans))
        store.delete_chunks(orphans)
        report.removed = len(orphans)
        # Vectors already in Chroma are reused; a run killed between the two writes below is
        # finished here, since the table rows are (re)written for every wanted chunk.
        to_embed = [identity for identity in wanted if identity not in in_chroma]
        for start in range(0, len(to_embed), 256):
            batch = [wanted[identity] for identity in to_embed[start : start + 256]]
            embeddings = embedder.embed([row["text"] for row in batch])
            vectors.upsert(
                [row["chunk_id"] for row in batch],
                embeddings,
                [row["text"] for row in batch],
                [row["_metadata"] for row in batch],
            )
            crash_points.reached("embed.vectors_upserted_rows_not_written")
            report.processed += len(batch)
        # Flags changed on the server: the stored chunks' metadata follows, nothing is re-embedded.
        refreshed_ids, refreshed_metadata = [], []
        for identity, before in zip(stored["ids"], stored["metadatas"], strict=True):
            if identity in wanted:
                after = {**(before or {}), **flag_metadata(flags.get(wanted[identity]["message_key"], set()))}
                if after != (before or {}):
                    refreshed_ids.append(identity)
                    refreshed_metadata.append(after)
        vectors.update_metadata(refreshed_ids, refreshed_metadata)
        report.extra["flags_updated"] = len(refreshed_ids)
        missing_rows = [
            {k: v for k, v in row.items() if k != "_metadata"}
            for identity, row in wanted.items()
            if identity not in in_table
        ]
        for start in range(0, len(missing_rows), WRITE_BATCH):
            store.write_rows(chunks, missing_rows[start : start + WRITE_BATCH])
        report.reused = len(wanted) - report.processed
        report.extra["indexed"] = _index_partition(LexicalIndex(store.url), texts, parsed_rows, account, day)
        chunked_messages = {row["message_key"] for row in wanted.values()}
        report.messages = len(texts)
        report.failures = sum(1 for key, text in texts.items() if text and key not in chunked_messages)
        report.extra["chunks"] = len(wanted)
        return report


def purge_before(store: MessageStore, vectors: VectorStore | None, cutoff_day: str) -> dict[str, int]:
    """Delete everything of days before `cutoff_day`, vectors first so none is left orphaned."""
    if vectors is None:
        return store.delete_days_before(cutoff_day)
    with vector_writer(vectors, store.url, ALL_PARTITIONS):
        vectors.delete(store.chunk_ids_before(cutoff_day, vectors.collection_name))
        return store.delete_days_before(cutoff_day)
