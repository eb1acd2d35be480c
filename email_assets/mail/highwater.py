"""Which days have new mail? Cheap questions only: STATUS per folder, then INTERNALDATEs of
the UIDs above the last known UIDNEXT.

State per folder is `{uidvalidity, uidnext}`. A folder seen for the first time, or whose
UIDVALIDITY changed, has every day it holds reported, because every stored UID of it may
now be wrong and those partitions must be resynced (mbsync's rule: an ambiguous state is
resynced, never guessed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from email_assets.mail.imap_session import ImapSession
from email_assets.mail.sync import utc_day

FolderMarks = dict[str, dict[str, int]]


@dataclass
class HighwaterChange:
    marks: FolderMarks
    days: set[dt.date] = field(default_factory=set)
    resynced_folders: list[str] = field(default_factory=list)


async def detect_new_mail(session: ImapSession, folders: list[str], previous: FolderMarks) -> HighwaterChange:
    change = HighwaterChange(marks={})
    for folder in folders:
        status = await session.status(folder)
        change.marks[folder] = {"uidvalidity": status.uidvalidity, "uidnext": status.uidnext}
        before = previous.get(folder)
        if before is not None and before["uidvalidity"] == status.uidvalidity:
            if status.uidnext <= before["uidnext"]:
                continue
            first_new = before["uidnext"]
        else:
            change.resynced_folders.append(folder)
            first_new = 1
        if status.messages == 0:
            continue
        await session.examine(folder)
        uids = await session.search_uids_from(first_new)
        for item in await session.message_dates(uids):
            change.days.add(utc_day(item.internaldate))
    return change
