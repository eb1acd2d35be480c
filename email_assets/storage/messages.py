"""Reads and writes of the per-message tables, partition by partition.

Every write is keyed by a deterministic key and done in one transaction per batch, so a
run killed half-way leaves whole batches behind and the next run carries on from there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from email_assets import crash_points
from email_assets.mail.keys import content_sha256, message_key
from email_assets.mail.records import FetchedMessage, MessageDate, stored_flags
from email_assets.storage.database import background_checkpoints, engine_for, upsert
from email_assets.storage.raw_packs import MissingRawBytesError, PackStore
from email_assets.storage.tables import (
    chunks,
    cleaned_texts,
    folder_state,
    message_locations,
    parsed_emails,
    raw_messages,
    search_documents,
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
        "flags": stored_flags(message.flags),
        "size": message.size,
    }


def pack_directory(database_url: str) -> Path | None:
    """Where raw bytes go for a SQLite file database (`<name>-raw/` beside it); None keeps
    them in the table (PostgreSQL, in-memory SQLite)."""
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database)
    return path.with_name(f"{path.stem}-raw")


def _delete_raw(connection: sa.Connection, *conditions: Any) -> tuple[int, list[tuple[str, str, int, int]]]:
    """Delete raw rows; returns how many, and the pack regions (account, pack, offset,
    size) their bytes occupied, to be erased once the deletion has committed."""
    regions = connection.execute(
        sa.select(raw_messages.c.account, raw_messages.c.pack, raw_messages.c.pack_offset, raw_messages.c.size).where(
            raw_messages.c.pack.is_not(None), *conditions
        )
    ).all()
    result = connection.execute(sa.delete(raw_messages).where(*conditions))
    return result.rowcount or 0, [tuple(region) for region in regions]


@dataclass
class PreparedBatch:
    """Rows of a fetched batch, ready to commit; its new bytes already written to a pack."""

    account: str
    raw_rows: list[dict[str, Any]]
    location_rows: list[dict[str, Any]]
    unnamed: list[dict[str, Any]]  # stored rows that now learn their server ids


class MessageStore:
    """The project's tables for one database URL."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.engine = engine_for(database_url)
        directory = pack_directory(database_url)
        self.packs = PackStore(directory) if directory is not None else None

    @contextlib.contextmanager
    def bulk_load(self, account: str) -> Iterator[None]:
        """Around a sync: WAL checkpoints off the writer's path, and the account's pack
        unlocked for other writers at the end (after the last batch's rows committed)."""
        try:
            with background_checkpoints(self.engine):
                yield
        finally:
            if self.packs is not None:
                self.packs.release(account)

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
        """Store one batch in one call, for callers with no next batch to overlap."""
        self.commit_prepared(self.prepare_fetched(account, messages, run_id))

    def prepare_fetched(self, account: str, messages: list[FetchedMessage], run_id: str | None) -> PreparedBatch:
        """The first half of storing a batch: keys, rows, and new bytes written to a pack.

        Split from `commit_prepared` so that a sync can prepare one batch while the one
        before is made durable and committed (`mail.sync` pipelines the two).
        """
        now = dt.datetime.now(dt.UTC)
        raw_rows: dict[str, dict[str, Any]] = {}
        location_rows = []
        for message in messages:
            sha = content_sha256(message.raw)
            key = message_key(account, sha)
            raw_rows.setdefault(
                key,
                {
                    "message_key": key,
                    "account": account,
                    "day": message.internaldate.astimezone(dt.UTC).date().isoformat(),
                    "internaldate": message.internaldate,
                    "size": len(message.raw),
                    "sha256": sha,
                    "raw": message.raw,
                    "run_id": run_id,
                    "fetched_at": now,
                    "server_id": message.server_id,
                    "server_thread_id": message.thread_id,
                    "pack": None,
                    "pack_offset": None,
                },
            )
            location_rows.append(_location_row(account, message.folder, message.uidvalidity, message, key))
        stored: dict[str, str | None] = {}
        with self.engine.connect() as connection:
            for batch in _batched(list(raw_rows)):
                query = sa.select(raw_messages.c.message_key, raw_messages.c.server_id)
                stored.update(connection.execute(query.where(raw_messages.c.message_key.in_(batch))).all())
        # A copy already stored from another folder keeps its first bytes and run.
        new = [row for key, row in raw_rows.items() if key not in stored]
        if self.packs is not None and new:
            for row, (pack, offset) in zip(new, self.packs.append(account, [row["raw"] for row in new]), strict=True):
                row.update(raw=b"", pack=pack, pack_offset=offset)
        # Stored before the server's ids were known (an older release, or a server that
        # gained OBJECTID): those rows get the ids.
        unnamed = [
            raw_rows[key] for key, server_id in stored.items() if server_id is None and raw_rows[key]["server_id"]
        ]
        return PreparedBatch(account, new, location_rows, unnamed)

    def commit_prepared(self, prepared: PreparedBatch) -> None:
        """Make a prepared batch's bytes durable, then commit its rows in one transaction:
        a committed row never points at bytes a crash could take back."""
        if self.packs is not None and prepared.raw_rows:
            self.packs.make_durable(prepared.account)
        crash_points.reached("raw.bytes_durable_rows_not_committed")
        with self.engine.begin() as connection:
            upsert(connection, raw_messages, prepared.raw_rows, update=False)  # a concurrent writer's copy stays
            upsert(connection, message_locations, prepared.location_rows)
            for row in prepared.unnamed:
                connection.execute(
                    sa.update(raw_messages)
                    .where(raw_messages.c.message_key == row["message_key"])
                    .values(server_id=row["server_id"], server_thread_id=row["server_thread_id"])
                )
        crash_points.reached("raw.batch_committed")

    def keys_for_server_ids(self, account: str, server_ids: list[str]) -> dict[str, str]:
        """Stored messages of the account by server id (see `mail.imap_session.ServerIds`)."""
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

    def stored_locations(
        self, account: str, folder: str, uidvalidity: int, uids: list[int] | None = None
    ) -> dict[int, tuple[dt.date, str]]:
        """UID -> (UTC day, stored flags) of the folder's stored locations (of `uids` only, if given)."""
        base = sa.select(message_locations.c.uid, message_locations.c.day, message_locations.c.flags).where(
            message_locations.c.account == account,
            message_locations.c.folder == folder,
            message_locations.c.uidvalidity == uidvalidity,
        )
        found: dict[int, tuple[dt.date, str]] = {}
        with self.engine.connect() as connection:
            queries = [base] if uids is None else [base.where(message_locations.c.uid.in_(b)) for b in _batched(uids)]
            for query in queries:
                found.update(
                    {uid: (dt.date.fromisoformat(day), flags or "") for uid, day, flags in connection.execute(query)}
                )
        return found

    def update_flags(
        self, account: str, folder: str, uidvalidity: int, flags: Mapping[int, tuple[str, ...]]
    ) -> dict[str, int]:
        """Make stored flags equal the server's for these UIDs; how many changed, per day."""
        stored = self.stored_locations(account, folder, uidvalidity, sorted(flags))
        changed: dict[str, int] = {}
        with self.engine.begin() as connection:
            for uid, (day, before) in stored.items():
                now = stored_flags(flags[uid])
                if now == before:
                    continue
                connection.execute(
                    sa.update(message_locations)
                    .where(
                        message_locations.c.account == account,
                        message_locations.c.folder == folder,
                        message_locations.c.uidvalidity == uidvalidity,
                        message_locations.c.uid == uid,
                    )
                    .values(flags=now)
                )
                changed[day.isoformat()] = changed.get(day.isoformat(), 0) + 1
        return changed

    def flags_by_message(self, account: str, day: str) -> dict[str, set[str]]:
        """message_key -> the flags of all its locations on the day (a message kept in two
        folders is flagged if either copy is, and seen if either is)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(message_locations.c.message_key, message_locations.c.flags).where(
                    message_locations.c.account == account, message_locations.c.day == day
                )
            )
            found: dict[str, set[str]] = {}
            for key, flags in rows:
                found.setdefault(key, set()).update((flags or "").split())
        return found

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
            removed, regions = _delete_raw(
                connection, raw_messages.c.account == account, raw_messages.c.day == iso, ~has_location
            )
        self._erase(regions)
        return removed

    def _erase(self, regions: list[tuple[str, str, int, int]]) -> None:
        """After their rows are gone: zero removed messages' bytes, then drop emptied packs."""
        if self.packs is None or not regions:
            return
        for account in sorted({owner for owner, *_ in regions}):
            self.packs.erase(account, [(pack, at, size) for owner, pack, at, size in regions if owner == account])
            self.remove_dead_packs(account)

    def remove_dead_packs(self, account: str) -> list[str]:
        """Delete the account's packs that no stored message points at any more."""
        if self.packs is None:
            return []

        def referenced(pack: str) -> bool:
            with self.engine.connect() as connection:
                return connection.execute(
                    sa.select(sa.exists().where(raw_messages.c.account == account, raw_messages.c.pack == pack))
                ).scalar_one()

        return [
            pack
            for pack in self.packs.packs(account)
            if self.packs.remove_if_unreferenced(account, pack, lambda pack=pack: referenced(pack))
        ]

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

    def raw_in_partition(
        self, account: str, day: str, missing_ok: bool = False, only: Container[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Raw rows of a partition with their bytes (of the keys in `only`, if given: the
        others' bytes are not read), streamed: a day's bytes are never all in memory.
        Bytes a pack lost raise `MissingRawBytesError`, or are None if `missing_ok`."""
        with self.engine.connect() as connection, self._raw_resolver(missing_ok) as resolve:
            result = (
                connection.execution_options(stream_results=True, yield_per=200)
                .execute(
                    sa.select(
                        raw_messages.c.message_key,
                        raw_messages.c.account,
                        raw_messages.c.sha256,
                        raw_messages.c.raw,
                        raw_messages.c.internaldate,
                        raw_messages.c.size,
                        raw_messages.c.server_thread_id,
                        raw_messages.c.pack,
                        raw_messages.c.pack_offset,
                    )
                    .where(raw_messages.c.account == account, raw_messages.c.day == day)
                    .order_by(raw_messages.c.message_key)
                )
                .mappings()
            )
            for row in result:
                if only is None or row["message_key"] in only:
                    yield resolve(row)

    def raw_bytes(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """message_key -> the stored bytes (None where a pack lost them)."""
        found: dict[str, bytes | None] = {}
        with self.engine.connect() as connection, self._raw_resolver(missing_ok=True) as resolve:
            for batch in _batched(sorted(keys)):
                rows = connection.execute(sa.select(raw_messages).where(raw_messages.c.message_key.in_(batch)))
                found.update({row["message_key"]: resolve(row)["raw"] for row in rows.mappings()})
        return found

    @contextlib.contextmanager
    def _raw_resolver(self, missing_ok: bool) -> Iterator[Callable[[Mapping[str, Any]], dict[str, Any]]]:
        """Rows made whole: `raw` read from its pack where the table holds only its place."""
        with self.packs.reader() if self.packs is not None else contextlib.nullcontext() as read:

            def resolve(row: Mapping[str, Any]) -> dict[str, Any]:
                whole = dict(row)
                if whole["pack"] is None:
                    return whole
                try:
                    if read is None:
                        raise MissingRawBytesError(f"raw bytes of {whole['message_key']}: in a pack, no pack directory")
                    whole["raw"] = read(whole["account"], whole["pack"], whole["pack_offset"], whole["size"])
                except MissingRawBytesError:
                    if not missing_ok:
                        raise
                    whole["raw"] = None
                return whole

            yield resolve

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
            for table in (search_documents, chunks, cleaned_texts, parsed_emails, message_locations):
                result = connection.execute(sa.delete(table).where(table.c.day < cutoff_day))
                deleted[table.name] = result.rowcount or 0
            deleted[raw_messages.name], regions = _delete_raw(connection, raw_messages.c.day < cutoff_day)
        self._erase(regions)
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
            raw = one(raw_messages)
            with self._raw_resolver(missing_ok=True) as resolve:
                raw = resolve(raw) if raw is not None else None
            return {
                "chunk": dict(chunk),
                "raw": raw,
                "locations": [dict(row) for row in locations],
                "parsed": one(parsed_emails),
                "cleaned": one(cleaned_texts),
            }


__all__ = ["MessageStore", "parsed_emails", "cleaned_texts", "chunks", "raw_messages"]
