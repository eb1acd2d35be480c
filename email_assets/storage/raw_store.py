"""raw_messages: the bytes exactly as served, stored batch by batch.

A batch is prepared (hashed, its new bytes appended to a pack) while the one before
commits, and its rows commit only once its bytes are durable: a committed row never
points at bytes a crash could take back. A copy already stored from another folder keeps
its first bytes and run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from email_assets import crash_points
from email_assets.mail.keys import content_sha256, message_key
from email_assets.mail.records import FetchedMessage
from email_assets.storage.database import background_checkpoints, upsert
from email_assets.storage.locations import location_row
from email_assets.storage.pack_lifecycle import PackLifecycle
from email_assets.storage.raw_packs import MissingRawBytesError
from email_assets.storage.store_base import batched
from email_assets.storage.tables import message_locations, raw_messages


@dataclass
class PreparedBatch:
    """Rows of a fetched batch, ready to commit; its new bytes already written to a pack."""

    account: str
    raw_rows: list[dict[str, Any]]
    location_rows: list[dict[str, Any]]
    unnamed: list[dict[str, Any]]  # stored rows that now learn their server ids


class RawStore(PackLifecycle):
    """The raw-byte store."""

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
            location_rows.append(location_row(account, message.folder, message.uidvalidity, message, key))
        stored: dict[str, str | None] = {}
        with self.engine.connect() as connection:
            for batch in batched(list(raw_rows)):
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
            for batch in batched(server_ids):
                rows = connection.execute(
                    sa.select(raw_messages.c.server_id, raw_messages.c.message_key).where(
                        raw_messages.c.account == account, raw_messages.c.server_id.in_(batch)
                    )
                )
                keys.update({server_id: key for server_id, key in rows})
        return keys

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
            for batch in batched(sorted(keys)):
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

    def partition_bytes(self, account: str, day: str) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.coalesce(sa.func.sum(raw_messages.c.size), 0)).where(
                    raw_messages.c.account == account, raw_messages.c.day == day
                )
            ).scalar_one()
