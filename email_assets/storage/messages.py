"""Reads and writes of the per-message tables, partition by partition.

Every write is keyed by a deterministic key and done in one transaction per batch, so a
run killed half-way leaves whole batches behind and the next run carries on from there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from email_assets.mail.imap import FetchedMessage, MessageDate
from email_assets.mail.keys import content_sha256, message_key
from email_assets.storage.database import engine_for, upsert
from email_assets.storage.tables import (
    chunks,
    cleaned_texts,
    folder_state,
    message_locations,
    parsed_emails,
    raw_messages,
)

_IN_CLAUSE_BATCH = 500


def _batched(items: Sequence[Any], size: int = _IN_CLAUSE_BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _location_row(
    account: str, folder: str, uidvalidity: int, message: FetchedMessage | MessageDate, key: str
) -> dict[str, Any]:
    """Where a message sits on the server; a downloaded one and a linked one alike."""
    return {
        "account": account,
        "folder": folder,
        "uidvalidity": uidvalidity,
        "uid": message.uid,
        "message_key": key,
        "day": message.internaldate.astimezone(dt.UTC).date().isoformat(),
        "internaldate": message.internaldate,
        "flags": " ".join(message.flags),
        "size": message.size,
    }


class MessageStore:
    """The project's tables for one database URL."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.engine = engine_for(database_url)

    # --- raw_messages -------------------------------------------------------------------

    def known_uid_days(self, account: str, folder: str, uidvalidity: int, uids: list[int]) -> dict[int, dt.date]:
        known: dict[int, dt.date] = {}
        with self.engine.connect() as connection:
            for batch in _batched(uids):
                rows = connection.execute(
                    sa.select(message_locations.c.uid, message_locations.c.day).where(
                        message_locations.c.account == account,
                        message_locations.c.folder == folder,
                        message_locations.c.uidvalidity == uidvalidity,
                        message_locations.c.uid.in_(batch),
                    )
                )
                known.update({uid: dt.date.fromisoformat(day) for uid, day in rows})
        return known

    def save_fetched(self, account: str, messages: list[FetchedMessage], run_id: str | None) -> None:
        if not messages:
            return
        now = dt.datetime.now(dt.UTC)
        raw_rows: dict[str, dict[str, Any]] = {}
        location_rows = []
        for message in messages:
            sha = content_sha256(message.raw)
            key = message_key(account, sha)
            day = message.internaldate.astimezone(dt.UTC).date().isoformat()
            raw_rows.setdefault(
                key,
                {
                    "message_key": key,
                    "account": account,
                    "day": day,
                    "internaldate": message.internaldate,
                    "size": len(message.raw),
                    "sha256": sha,
                    "raw": message.raw,
                    "run_id": run_id,
                    "fetched_at": now,
                    "server_id": message.server_id,
                    "server_thread_id": message.thread_id,
                },
            )
            location_rows.append(_location_row(account, message.folder, message.uidvalidity, message, key))
        with self.engine.begin() as connection:
            identified = [key for key, row in raw_rows.items() if row["server_id"] is not None]
            # Stored before the server's ids were known (an older release, or a server that
            # gained OBJECTID): those rows get the ids; one query per batch finds them.
            unnamed = (
                connection.execute(
                    sa.select(raw_messages.c.message_key).where(
                        raw_messages.c.message_key.in_(identified), raw_messages.c.server_id.is_(None)
                    )
                )
                .scalars()
                .all()
                if identified
                else []
            )
            # A copy already stored from another folder keeps its first bytes and run.
            upsert(connection, raw_messages, list(raw_rows.values()), update=False)
            upsert(connection, message_locations, location_rows)
            for key in unnamed:
                connection.execute(
                    sa.update(raw_messages)
                    .where(raw_messages.c.message_key == key)
                    .values(server_id=raw_rows[key]["server_id"], server_thread_id=raw_rows[key]["server_thread_id"])
                )

    def keys_for_server_ids(self, account: str, server_ids: list[str]) -> dict[str, str]:
        """Stored messages of the account by server id (see `mail.imap.ServerIds`)."""
        keys: dict[str, str] = {}
        with self.engine.connect() as connection:
            for batch in _batched(server_ids):
                rows = connection.execute(
                    sa.select(raw_messages.c.server_id, raw_messages.c.message_key).where(
                        raw_messages.c.account == account, raw_messages.c.server_id.in_(batch)
                    )
                )
                keys.update({server_id: key for server_id, key in rows})
        return keys

    def save_locations(
        self, account: str, folder: str, uidvalidity: int, linked: list[tuple[MessageDate, str]]
    ) -> None:
        """New locations (UIDs) of messages already stored, each given with its message key."""
        with self.engine.begin() as connection:
            upsert(
                connection,
                message_locations,
                [_location_row(account, folder, uidvalidity, item, key) for item, key in linked],
            )

    def locations_of(self, account: str, folder: str, day: dt.date) -> set[tuple[int, int]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(message_locations.c.uidvalidity, message_locations.c.uid).where(
                    message_locations.c.account == account,
                    message_locations.c.folder == folder,
                    message_locations.c.day == day.isoformat(),
                )
            )
            return {(uidvalidity, uid) for uidvalidity, uid in rows}

    def location_days(self, account: str, folder: str) -> set[dt.date]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(message_locations.c.day)
                .where(message_locations.c.account == account, message_locations.c.folder == folder)
                .distinct()
            )
            return {dt.date.fromisoformat(day) for (day,) in rows}

    def reconcile_folder_day(self, account: str, folder: str, day: dt.date, present: set[tuple[int, int]]) -> int:
        """Drop locations of this folder and day not on the server; then orphaned messages."""
        iso = day.isoformat()
        with self.engine.begin() as connection:
            stored = connection.execute(
                sa.select(message_locations.c.uidvalidity, message_locations.c.uid).where(
                    message_locations.c.account == account,
                    message_locations.c.folder == folder,
                    message_locations.c.day == iso,
                )
            ).all()
            gone = [tuple(row) for row in stored if tuple(row) not in present]
            for uidvalidity, uid in gone:
                connection.execute(
                    sa.delete(message_locations).where(
                        message_locations.c.account == account,
                        message_locations.c.folder == folder,
                        message_locations.c.uidvalidity == uidvalidity,
                        message_locations.c.uid == uid,
                    )
                )
            if not gone:
                return 0
            has_location = sa.exists().where(message_locations.c.message_key == raw_messages.c.message_key)
            result = connection.execute(
                sa.delete(raw_messages).where(
                    raw_messages.c.account == account, raw_messages.c.day == iso, ~has_location
                )
            )
            return result.rowcount or 0

    def record_folder_state(
        self, account: str, folder: str, uidvalidity: int, uidnext: int, highest_uid: int, message_count: int
    ) -> None:
        with self.engine.begin() as connection:
            previous = connection.execute(
                sa.select(folder_state.c.uidvalidity, folder_state.c.highest_uid).where(
                    folder_state.c.account == account, folder_state.c.folder == folder
                )
            ).first()
            if previous is not None and previous.uidvalidity == uidvalidity:
                highest_uid = max(highest_uid, previous.highest_uid)
            upsert(
                connection,
                folder_state,
                [
                    {
                        "account": account,
                        "folder": folder,
                        "uidvalidity": uidvalidity,
                        "highest_uid": highest_uid,
                        "uidnext": uidnext,
                        "message_count": message_count,
                        "last_sync_at": dt.datetime.now(dt.UTC),
                    }
                ],
            )

    def folder_states(self, account: str) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(folder_state).where(folder_state.c.account == account)).mappings()
            return {row["folder"]: dict(row) for row in rows}

    def raw_in_partition(self, account: str, day: str) -> Iterator[sa.RowMapping]:
        """Raw rows of a partition, streamed: a day's bytes are never all in memory."""
        with self.engine.connect() as connection:
            result = (
                connection.execution_options(stream_results=True, yield_per=200)
                .execute(
                    sa.select(
                        raw_messages.c.message_key,
                        raw_messages.c.sha256,
                        raw_messages.c.raw,
                        raw_messages.c.internaldate,
                        raw_messages.c.size,
                        raw_messages.c.server_thread_id,
                    )
                    .where(raw_messages.c.account == account, raw_messages.c.day == day)
                    .order_by(raw_messages.c.message_key)
                )
                .mappings()
            )
            yield from result

    def raw_summary(self, account: str, day: str) -> dict[str, str]:
        """message_key -> sha256 for a partition (cheap: no bytes)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(raw_messages.c.message_key, raw_messages.c.sha256).where(
                    raw_messages.c.account == account, raw_messages.c.day == day
                )
            )
            return dict(rows.all())

    def count(self, table: sa.Table, account: str, day: str, *conditions: Any) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.account == account, table.c.day == day, *conditions)
            ).scalar_one()

    def partition_bytes(self, account: str, day: str) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.coalesce(sa.func.sum(raw_messages.c.size), 0)).where(
                    raw_messages.c.account == account, raw_messages.c.day == day
                )
            ).scalar_one()

    # --- derived tables -----------------------------------------------------------------

    def versions_in_partition(
        self, table: sa.Table, version_columns: str | tuple[str, ...], account: str, day: str
    ) -> dict[str, Any]:
        """message_key -> version (or tuple of versions): what a step needs to skip work."""
        names = (version_columns,) if isinstance(version_columns, str) else version_columns
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(table.c.message_key, *(table.c[name] for name in names)).where(
                    table.c.account == account, table.c.day == day
                )
            )
            if isinstance(version_columns, str):
                return {row[0]: row[1] for row in rows}
            return {row[0]: tuple(row[1:]) for row in rows}

    def rows_in_partition(
        self,
        table: sa.Table,
        account: str,
        day: str,
        keys: Iterable[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> Iterator[sa.RowMapping]:
        """A partition's rows (only `columns` when given: bodies are large), optionally of `keys`."""
        with self.engine.connect() as connection:
            selected = [table.c[name] for name in columns] if columns else [table]
            query = sa.select(*selected).where(table.c.account == account, table.c.day == day)
            if keys is None:
                yield from connection.execute(query).mappings()
                return
            for batch in _batched(sorted(keys)):
                yield from connection.execute(query.where(table.c.message_key.in_(batch))).mappings()

    def write_rows(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            upsert(connection, table, rows)

    def delete_messages(self, table: sa.Table, keys: Iterable[str]) -> int:
        deleted = 0
        with self.engine.begin() as connection:
            for batch in _batched(sorted(keys)):
                result = connection.execute(sa.delete(table).where(table.c.message_key.in_(batch)))
                deleted += result.rowcount or 0
        return deleted

    def chunk_ids_in_partition(self, account: str, day: str, collection: str) -> dict[str, str]:
        """chunk_id -> message_key of the partition's chunks in one collection."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(chunks.c.chunk_id, chunks.c.message_key).where(
                    chunks.c.account == account, chunks.c.day == day, chunks.c.collection == collection
                )
            )
            return dict(rows.all())

    def delete_chunks(self, chunk_ids: Iterable[str]) -> None:
        with self.engine.begin() as connection:
            for batch in _batched(sorted(chunk_ids)):
                connection.execute(sa.delete(chunks).where(chunks.c.chunk_id.in_(batch)))

    # --- retention ----------------------------------------------------------------------

    def chunk_ids_before(self, cutoff_day: str, collection: str) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(chunks.c.chunk_id).where(chunks.c.day < cutoff_day, chunks.c.collection == collection)
            )
            return [row[0] for row in rows]

    def delete_days_before(self, cutoff_day: str) -> dict[str, int]:
        deleted = {}
        with self.engine.begin() as connection:
            for table in (chunks, cleaned_texts, parsed_emails, message_locations, raw_messages):
                result = connection.execute(sa.delete(table).where(table.c.day < cutoff_day))
                deleted[table.name] = result.rowcount or 0
        return deleted

    # --- lineage ------------------------------------------------------------------------

    def trace_chunk(self, chunk_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            chunk = connection.execute(sa.select(chunks).where(chunks.c.chunk_id == chunk_id)).mappings().first()
            if chunk is None:
                return None
            key = chunk["message_key"]

            def one(table: sa.Table) -> dict[str, Any] | None:
                row = connection.execute(sa.select(table).where(table.c.message_key == key)).mappings().first()
                return dict(row) if row is not None else None

            locations = (
                connection.execute(sa.select(message_locations).where(message_locations.c.message_key == key))
                .mappings()
                .all()
            )
            return {
                "chunk": dict(chunk),
                "raw": one(raw_messages),
                "locations": [dict(row) for row in locations],
                "parsed": one(parsed_emails),
                "cleaned": one(cleaned_texts),
            }


__all__ = ["MessageStore", "parsed_emails", "cleaned_texts", "chunks", "raw_messages"]
