"""Bring one account's stored raw messages for a range of UTC days in line with the server.

IMAP SEARCH SINCE/BEFORE compares dates in the server's time zone, so each folder is
searched over a window one day wider on each side and then filtered exactly by
INTERNALDATE in UTC. Messages already stored (same folder, UIDVALIDITY and UID) are never
fetched again; locations that vanished from the server (expunged, or invalidated by a
UIDVALIDITY change) are dropped, and a message left with no location is deleted. Where the
server names its messages (Gmail X-GM-MSGID, RFC 8474 EMAILID), a new UID whose id is
stored already is linked to that message without its body being downloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from email_assets.mail.imap_session import FETCH_BATCH_SIZE, ImapSession, MessageDate
from email_assets.mail.records import FetchedMessage, stored_flags


class RawMessageSink(Protocol):
    """What the sync needs from storage (implemented by `storage.messages.MessageStore`)."""

    def stored_locations(
        self, account: str, folder: str, uidvalidity: int, uids: list[int] | None = None
    ) -> dict[int, tuple[dt.date, str]]: ...

    def prepare_fetched(self, account: str, messages: list[FetchedMessage], run_id: str | None) -> Any: ...

    def commit_prepared(self, prepared: Any) -> None: ...

    def keys_for_server_ids(self, account: str, server_ids: list[str]) -> dict[str, str]: ...

    def save_locations(
        self, account: str, folder: str, uidvalidity: int, linked: list[tuple[MessageDate, str]]
    ) -> None: ...

    def reconcile_folder_day(self, account: str, folder: str, day: dt.date, present: set[tuple[int, int]]) -> int: ...

    def locations_of(self, account: str, folder: str, day: dt.date) -> set[tuple[int, int]]: ...

    def stored_folders(self, account: str, days: list[dt.date]) -> set[str]: ...

    def set_flags(self, account: str, folder: str, uidvalidity: int, flags: dict[int, str]) -> None: ...

    def record_folder_state(
        self, account: str, folder: str, uidvalidity: int, uidnext: int, highest_uid: int, message_count: int
    ) -> None: ...


@dataclass
class SyncReport:
    """What one sync did, per day (ISO date) and in total."""

    fetched: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    on_server: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    linked: dict[str, int] = field(default_factory=dict)  # known by server id: located, not downloaded
    flags_changed: dict[str, int] = field(default_factory=dict)  # stored copies whose flags followed the server
    # Messages the server served unusably (malformed INTERNALDATE, body over the size limit):
    # not stored, one line each (the first 100), and how many in all.
    defects: list[str] = field(default_factory=list)
    defect_count: int = 0
    ignored_answers: int = 0  # FETCH answers for UIDs not asked for: dropped, never stored

    def add(self, counter: dict[str, int], day: dt.date, amount: int) -> None:
        counter[day.isoformat()] = counter.get(day.isoformat(), 0) + amount


class _BackgroundWriter:
    """Stores batches on worker threads while the next ones are read and parsed.

    Storing is two stages, pipelined: a batch is prepared (hashed, its bytes written)
    while the one before is made durable and committed, so the disk's flush does not hold
    up the next batch. At most two batches wait besides the two in the stages, so memory
    stays bounded; a failed write surfaces at the next `put` or at exit (never a producer
    stuck on a full queue), and batches already stored stay stored (each is one
    transaction).
    """

    def __init__(self, sink: RawMessageSink, account: str, run_id: str | None, progress: Callable[[int], None]) -> None:
        self._sink, self._account, self._run_id, self._progress = sink, account, run_id, progress
        self._queue: asyncio.Queue[list[FetchedMessage] | None] = asyncio.Queue(maxsize=2)
        self.saved: list[tuple[dt.date, int, int, int]] = []  # (UTC day, UIDVALIDITY, UID, bytes)
        self._task: asyncio.Task[None] | None = None

    async def _drain(self) -> None:
        committing: asyncio.Task[None] | None = None
        try:
            while (batch := await self._queue.get()) is not None:
                prepared = await asyncio.to_thread(self._sink.prepare_fetched, self._account, batch, self._run_id)
                if committing is not None:
                    await committing  # commits stay in order
                committing = asyncio.create_task(self._commit(batch, prepared))
        finally:
            if committing is not None:
                await committing

    async def _commit(self, batch: list[FetchedMessage], prepared: Any) -> None:
        await asyncio.to_thread(self._sink.commit_prepared, prepared)
        self.saved.extend(
            (utc_day(message.internaldate), message.uidvalidity, message.uid, len(message.raw)) for message in batch
        )
        self._progress(len(self.saved))

    async def put(self, batch: list[FetchedMessage] | None) -> None:
        assert self._task is not None
        if not self._task.done():
            queued = asyncio.ensure_future(self._queue.put(batch))
            await asyncio.wait({queued, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if queued.done():
                return
            queued.cancel()
        self._task.result()  # the writer failed: raise its error here

    async def __aenter__(self) -> _BackgroundWriter:
        self._task = asyncio.create_task(self._drain())
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        assert self._task is not None
        if exc_type is not None:  # store what arrived, then let the fetch error through
            with contextlib.suppress(Exception):
                await self.put(None)
                await self._task
            return
        await self.put(None)
        await self._task


def _take_defects(session: ImapSession, report: SyncReport, progress: Callable[[str], None]) -> None:
    """What the server served unusably so far, into the report and the run's log: a
    skipped message is never silent."""
    for line in session.defects[len(report.defects) :]:
        progress(f"skipped: {line}")
    if session.ignored_answers > report.ignored_answers:
        progress(f"{session.ignored_answers} FETCH answer(s) for UIDs not asked for ignored")
    report.defects = list(session.defects)
    report.defect_count, report.ignored_answers = session.defect_count, session.ignored_answers


def utc_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(dt.UTC).date()


async def _split_by_server_id(
    session: ImapSession, sink: RawMessageSink, account: str, uids: list[int], wanted: set[dt.date]
) -> tuple[list[int], list[tuple[MessageDate, str]]]:
    """Of new UIDs on the wanted days: those to download, and those whose server id is
    stored already (another folder or label, or an older UIDVALIDITY) with their keys.

    Every new UID is dated here, even ones a SEARCH puts well inside the range: its id
    decides whether the body is downloaded at all.
    """
    dates = [item for item in await session.message_dates(uids, with_ids=True) if utc_day(item.internaldate) in wanted]
    stored = sink.keys_for_server_ids(account, sorted({item.server_id for item in dates if item.server_id}))
    linked = [(item, stored[item.server_id]) for item in dates if item.server_id in stored]
    return [item.uid for item in dates if item.server_id not in stored], linked


async def sync_days(
    session: ImapSession,
    sink: RawMessageSink,
    account: str,
    folders: list[str],
    days: list[dt.date],
    run_id: str | None = None,
    progress: Callable[[str], None] = lambda _message: None,
    batch_size: int = FETCH_BATCH_SIZE,
    keep_expunged: bool = False,
) -> SyncReport:
    """`keep_expunged` keeps the copy of mail deleted on the server (an archive), but a
    location invalidated by a UIDVALIDITY change is still replaced by its new one."""
    report = SyncReport()
    wanted = set(days)
    first, last = min(days), max(days)
    one_day = dt.timedelta(days=1)
    # A server-local date lies within a day of the UTC date, so a message the server dates
    # strictly inside a contiguous range is surely wanted: only the edges need INTERNALDATEs.
    contiguous = len(wanted) == (last - first).days + 1
    for day in days:
        counters = (report.fetched, report.bytes, report.on_server, report.failures, report.removed, report.linked)
        for counter in (*counters, report.flags_changed):
            report.add(counter, day, 0)
    for folder in folders:
        status = await session.examine(folder)
        candidates = await session.search_uids(first - one_day, last + 2 * one_day)
        known = sink.stored_locations(account, folder, status.uidvalidity, candidates)  # uid -> (day, flags)
        present: dict[dt.date, set[tuple[int, int]]] = {day: set() for day in days}
        for uid, (day, _flags) in known.items():
            if day in wanted:
                present[day].add((status.uidvalidity, uid))
        new = [uid for uid in candidates if uid not in known]
        # Flags are data: the stored copies of the range follow the server's flags (one FETCH).
        in_range = sorted(uid for uid, (day, _flags) in known.items() if day in wanted)
        on_server = await session.flags_of(in_range) if in_range else {}
        changed = {uid: stored_flags(flags) for uid, flags in on_server.items() if stored_flags(flags) != known[uid][1]}
        if changed:
            sink.set_flags(account, folder, status.uidvalidity, changed)
        for uid in changed:
            report.add(report.flags_changed, known[uid][0], 1)
        if session.server_ids is not None and new:
            to_fetch, linked = await _split_by_server_id(session, sink, account, new, wanted)
            if linked:
                sink.save_locations(account, folder, status.uidvalidity, linked)
            for item, _key in linked:
                present[utc_day(item.internaldate)].add((status.uidvalidity, item.uid))
                report.add(report.linked, utc_day(item.internaldate), 1)
        else:
            inner = set(await session.search_uids(first + one_day, last)) if contiguous and len(days) >= 3 else set()
            edge = [uid for uid in new if uid not in inner]
            to_fetch = [uid for uid in new if uid in inner]
            for item in await session.message_dates(edge) if edge else []:
                if utc_day(item.internaldate) in wanted:
                    to_fetch.append(item.uid)
        to_fetch.sort()
        progress(f"{folder}: {len(candidates)} in window, {len(to_fetch)} to fetch")

        def stored(count: int, folder: str = folder, total: int = len(to_fetch)) -> None:
            if count % (batch_size * 10) < batch_size or count == total:  # every ~10 batches
                progress(f"{folder}: {count}/{total} stored")

        async with _BackgroundWriter(sink, account, run_id, stored) as writer:
            async for batch in session.fetch_messages(folder, status.uidvalidity, to_fetch, batch_size):
                await writer.put(batch)
        for day, uidvalidity, uid, size in writer.saved:
            present.setdefault(day, set()).add((uidvalidity, uid))
            report.add(report.fetched, day, 1)
            report.add(report.bytes, day, size)
        # Asked for but not served: a failure if the server still has it (an inner-day UID
        # is dated only now, with one more batched FETCH), not if it was expunged meanwhile.
        received = {uid for day_set in present.values() for _, uid in day_set}
        missing = [uid for uid in to_fetch if uid not in received]
        ignored_before = session.ignored_answers
        dated = await session.message_dates(missing) if missing else []
        for item in dated:
            if (day := utc_day(item.internaldate)) in wanted:
                report.add(report.failures, day, 1)
        if session.ignored_answers > ignored_before:  # answered for another UID: not "expunged meanwhile"
            for uid in sorted(set(missing) - {item.uid for item in dated}):
                session.record_defect(f"UID {uid}: answered only under another UID; not stored")
        for day in days:
            report.add(report.on_server, day, len(present[day]))
            if keep_expunged:  # keep everything stored for this folder except stale UIDVALIDITY
                present[day] |= {
                    (uidvalidity, uid)
                    for uidvalidity, uid in sink.locations_of(account, folder, day)
                    if uidvalidity == status.uidvalidity
                }
            removed = sink.reconcile_folder_day(account, folder, day, present[day])
            report.add(report.removed, day, removed)
        sink.record_folder_state(
            account, folder, status.uidvalidity, status.uidnext, max(candidates, default=0), status.messages
        )
        _take_defects(session, report, progress)
    # A folder no longer on the server (deleted, or renamed: its mail is found again under
    # the new name above) takes its copies on these days with it, unless kept as an archive.
    for folder in [] if keep_expunged else sorted(sink.stored_folders(account, days) - set(folders)):
        for day in days:
            report.add(report.removed, day, sink.reconcile_folder_day(account, folder, day, set()))
    return report
