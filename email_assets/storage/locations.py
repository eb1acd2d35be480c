"""message_locations and folder_state: where each stored message sits on the server.

A message has one row per (folder, UIDVALIDITY, UID) it was found at, with the flags
the server reported last. Reconciling a folder's day drops the locations the server no
longer has, and a message left with no location is deleted with its bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from email_assets.mail.records import FetchedMessage, MessageDate, stored_flags
from email_assets.storage.database import upsert
from email_assets.storage.pack_lifecycle import PackLifecycle, delete_raw_rows
from email_assets.storage.store_base import batched
from email_assets.storage.tables import folder_state, message_locations, raw_messages


def location_row(
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


class LocationStore(PackLifecycle):
    """Where stored messages sit on the server, and their flags."""

    def save_locations(
        self, account: str, folder: str, uidvalidity: int, linked: list[tuple[MessageDate, str]]
    ) -> None:
        """New locations (UIDs) of messages already stored, each given with its message key."""
        with self.engine.begin() as connection:
            upsert(
                connection,
                message_locations,
                [location_row(account, folder, uidvalidity, item, key) for item, key in linked],
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
            queries = [base] if uids is None else [base.where(message_locations.c.uid.in_(b)) for b in batched(uids)]
            for query in queries:
                found.update(
                    {uid: (dt.date.fromisoformat(day), flags or "") for uid, day, flags in connection.execute(query)}
                )
        return found

    def set_flags(self, account: str, folder: str, uidvalidity: int, flags: Mapping[int, str]) -> None:
        """Store these UIDs' flags (as `records.stored_flags` spells them), in one transaction."""
        with self.engine.begin() as connection:
            for uid, value in flags.items():
                connection.execute(
                    sa.update(message_locations)
                    .where(
                        message_locations.c.account == account,
                        message_locations.c.folder == folder,
                        message_locations.c.uidvalidity == uidvalidity,
                        message_locations.c.uid == uid,
                    )
                    .values(flags=value)
                )

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

    def stored_folders(self, account: str, days: list[dt.date]) -> set[str]:
        """Folders holding a stored copy of the account's mail on any of `days`."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(message_locations.c.folder)
                .where(
                    message_locations.c.account == account,
                    message_locations.c.day.in_([day.isoformat() for day in days]),
                )
                .distinct()
            )
            return {folder for (folder,) in rows}

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
            removed, regions = delete_raw_rows(
                connection, raw_messages.c.account == account, raw_messages.c.day == iso, ~has_location
            )
        self._erase(regions)
        return removed

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
