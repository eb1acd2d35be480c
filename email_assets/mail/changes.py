"""Which days changed on the server since the last look: new mail, expunges, flag changes.

State per folder is `{uidvalidity, uidnext, messages, highestmodseq, swept_at}`. What is
asked depends on what the server offers, cheapest first:

- Every folder gets one STATUS. A folder whose UIDNEXT, MESSAGES and (with CONDSTORE)
  HIGHESTMODSEQ are all unchanged has not changed at all: nothing more is asked.
- New mail: the INTERNALDATEs of the UIDs at or above the last UIDNEXT.
- QRESYNC (RFC 7162; Dovecot, Fastmail, Cyrus): one `UID FETCH 1:* (UID FLAGS)
  (CHANGEDSINCE m VANISHED)` names every flag change and every expunged UID since the last
  HIGHESTMODSEQ.
- CONDSTORE without QRESYNC (Gmail): CHANGEDSINCE gives the flag changes; expunges come
  from the fallback below.
- The fallback for expunges, mbsync's: MESSAGES now against MESSAGES then plus the new
  UIDs. Equal means nothing old was expunged; less means a `UID SEARCH ALL` (ESEARCH
  where offered) is diffed against the stored UIDs of the folder.
- Without CONDSTORE, flags cannot be asked for by change: every `sweep_seconds` the flags
  of the whole folder are fetched and compared with the stored ones.

A folder seen for the first time, or whose UIDVALIDITY changed, or that is gone from the
server, has every day it holds reported, because every stored UID of it may now be wrong
and those partitions must be resynced (an ambiguous state is resynced, never guessed). Expunges and flag changes are
mapped to days through the stored locations: a change to a message never stored (outside
the retention window, say) needs no run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from email_assets.mail.imap_session import FolderStatus, ImapSession
from email_assets.mail.imap_wire import UidRanges
from email_assets.mail.records import stored_flags
from email_assets.mail.sync import utc_day

FolderMarks = dict[str, dict[str, int]]
FLAG_SWEEP_SECONDS = 3600
_VANISHED_LOOKUP_MOST = 50_000  # vanished UIDs looked up one by one; more: the stored ones are scanned


class StoredLocations(Protocol):
    """What the detection needs from storage (implemented by `storage.messages.MessageStore`)."""

    def stored_locations(
        self, account: str, folder: str, uidvalidity: int, uids: list[int] | None = None
    ) -> dict[int, tuple[dt.date, str]]: ...


@dataclass
class MailboxChanges:
    marks: FolderMarks
    days: set[dt.date] = field(default_factory=set)
    resynced_folders: list[str] = field(default_factory=list)
    gone_folders: list[str] = field(default_factory=list)  # deleted or renamed on the server
    new: int = 0
    expunged: int = 0
    flag_changes: int = 0

    def describe(self) -> str:
        return f"{self.new} new, {self.expunged} expunged, {self.flag_changes} flag change(s)"


def _stored_among(
    vanished: UidRanges, stored: StoredLocations, account: str, folder: str, uidvalidity: int
) -> list[int]:
    """The stored UIDs among those a QRESYNC server says vanished. The set stays ranges (a
    server may send `1:4294967295`): a small one is looked up UID by UID, a big one is
    matched against the folder's stored UIDs, which are bounded by what we keep."""
    if not vanished:
        return []
    if len(vanished) <= _VANISHED_LOOKUP_MOST:
        return list(vanished)
    return sorted(uid for uid in stored.stored_locations(account, folder, uidvalidity) if uid in vanished)


def _unchanged(status: FolderStatus, before: dict[str, int], sweep_due: bool) -> bool:
    same = status.uidnext == before.get("uidnext") and status.messages == before.get("messages")
    if status.highestmodseq:
        return same and status.highestmodseq == before.get("highestmodseq")
    return same and not sweep_due


async def detect_changes(
    session: ImapSession,
    account: str,
    folders: list[str],
    previous: FolderMarks,
    stored: StoredLocations,
    now: float,
    sweep_seconds: float = FLAG_SWEEP_SECONDS,
) -> MailboxChanges:
    """What changed in `folders` since `previous` (this function's own earlier marks)."""
    changes = MailboxChanges(marks={})
    qresync = await session.enable_qresync()
    for folder in folders:
        status = await session.status(folder)
        before = previous.get(folder)
        swept_at = (before or {}).get("swept_at", 0)
        sweep_due = not status.highestmodseq and now - swept_at >= sweep_seconds
        marks = {
            "uidvalidity": status.uidvalidity,
            "uidnext": status.uidnext,
            "messages": status.messages,
            "highestmodseq": status.highestmodseq,
            "swept_at": swept_at,
        }
        changes.marks[folder] = marks
        if before is not None and before["uidvalidity"] == status.uidvalidity:
            if _unchanged(status, before, sweep_due):
                continue
            first_new = before["uidnext"]
        else:
            changes.resynced_folders.append(folder)
            first_new = 1
            before = None
            marks["swept_at"] = int(now)  # a resync reads every flag
        if status.messages == 0 and before is None:
            continue
        selected = await session.examine(folder)
        marks.update(messages=selected.messages, highestmodseq=selected.highestmodseq if status.highestmodseq else 0)
        new_uids = await session.search_uids_from(first_new) if status.uidnext > first_new else []
        for item in await session.message_dates(new_uids) if new_uids else []:
            changes.days.add(utc_day(item.internaldate))
        changes.new += len(new_uids)
        if before is None:
            continue  # every stored day of the folder is resynced anyway
        gone: list[int] = []
        server_flags: dict[int, tuple[str, ...]] = {}
        if status.highestmodseq and before.get("highestmodseq"):
            found = await session.changes_since(before["highestmodseq"])
            gone, server_flags = _stored_among(found.vanished, stored, account, folder, status.uidvalidity), found.flags
        count_says_expunged = "messages" not in before or selected.messages < before["messages"] + len(new_uids)
        if count_says_expunged and not (qresync and before.get("highestmodseq")):
            on_server = set(await session.all_uids())
            gone = sorted(set(stored.stored_locations(account, folder, status.uidvalidity)) - on_server)
        if sweep_due:
            server_flags = await session.all_flags()
            marks["swept_at"] = int(now)
        old_changed = [uid for uid in server_flags if uid < first_new]
        known = stored.stored_locations(account, folder, status.uidvalidity, sorted({*gone, *old_changed}))
        for uid in gone:
            if uid in known:
                changes.days.add(known[uid][0])
                changes.expunged += 1
        for uid in old_changed:
            if uid in known and known[uid][1] != stored_flags(server_flags[uid]):
                changes.days.add(known[uid][0])
                changes.flag_changes += 1
    # A folder deleted (or renamed) on the server: every day it held is resynced, which
    # removes its locations (a renamed folder's mail comes back under the new name).
    changes.gone_folders = sorted(set(previous) - set(folders))
    return changes
