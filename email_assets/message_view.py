"""One stored message (or its thread) as a reader sees it: `email-assets show` and `similar`.

A search hit names a message by its key; a person names it by its Message-ID. Both are
resolved here, and the cleaned text (quoted reply and signature cut, as the index holds
it) is returned with the headers that say who wrote it, when, and in which thread.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from email_assets.errors import UserError
from email_assets.mail.parsing import normalize_message_id
from email_assets.storage.database import engine_for
from email_assets.storage.tables import cleaned_texts, message_locations, parsed_emails

_SHOWN_KEYS = 5  # keys listed when a Message-ID names several stored messages


@dataclass(frozen=True)
class StoredMessage:
    """The headers a reader needs and the cleaned text of one stored message."""

    message_key: str
    account: str
    message_id: str | None
    thread_id: str | None
    subject: str | None
    sender: str
    to: list[str]
    cc: list[str]
    date: dt.datetime | None
    folders: list[str]
    text: str

    def as_json(self) -> dict[str, Any]:
        return {
            "message_key": self.message_key,
            "account": self.account,
            "message_id": self.message_id,
            "thread_id": self.thread_id,
            "subject": self.subject,
            "from": self.sender,
            "to": self.to,
            "cc": self.cc,
            "date": self.date.isoformat() if self.date else None,
            "folders": self.folders,
            "text": self.text,
        }


def resolve_message(database_url: str, identifier: str, account: str | None = None) -> str:
    """The message key that `identifier` (a message key, or a Message-ID with or without <>) names."""
    with engine_for(database_url).connect() as connection:
        by_key = connection.execute(
            sa.select(parsed_emails.c.message_key).where(parsed_emails.c.message_key == identifier.strip())
        ).scalar_one_or_none()
        if by_key:
            return by_key
        wanted = normalize_message_id(identifier.strip())
        statement = sa.select(parsed_emails.c.message_key).where(parsed_emails.c.message_id == wanted)
        if account:
            statement = statement.where(parsed_emails.c.account == account)
        keys = sorted(connection.execute(statement).scalars())
    if not keys:
        raise UserError(f"no stored message has the key or Message-ID {identifier!r}")
    if len(keys) > 1:
        shown = ", ".join(keys[:_SHOWN_KEYS]) + (" ..." if len(keys) > _SHOWN_KEYS else "")
        raise UserError(f"{len(keys)} stored messages have the Message-ID {identifier!r}: give one key ({shown})")
    return keys[0]


def load_messages(database_url: str, keys: list[str]) -> list[StoredMessage]:
    """The messages of `keys` that are stored, in date order (undated last)."""
    with engine_for(database_url).connect() as connection:
        rows = connection.execute(
            sa.select(parsed_emails, cleaned_texts.c.text.label("cleaned"))
            .select_from(
                parsed_emails.outerjoin(cleaned_texts, cleaned_texts.c.message_key == parsed_emails.c.message_key)
            )
            .where(parsed_emails.c.message_key.in_(keys))
        ).mappings()
        rows = list(rows)
        folders: dict[str, set[str]] = {}
        for key, folder in connection.execute(
            sa.select(message_locations.c.message_key, message_locations.c.folder).where(
                message_locations.c.message_key.in_(keys)
            )
        ):
            folders.setdefault(key, set()).add(folder)
    messages = [_stored(row, sorted(folders.get(row["message_key"], ()))) for row in rows]
    return sorted(
        messages, key=lambda message: (message.date is None, message.date or dt.datetime.min, message.message_key)
    )


def _mailbox(name: str | None, address: str | None) -> str:
    """`Name <address>` as a header shows it, or whichever part is known."""
    return f"{name} <{address}>" if name and address else (address or name or "")


def _stored(row: Any, folders: list[str]) -> StoredMessage:
    sender = _mailbox(row["from_name"], row["from_address"])
    text = row["cleaned"] if row["cleaned"] is not None else (row["text_body"] or "")
    return StoredMessage(
        row["message_key"],
        row["account"],
        row["message_id"],
        row["thread_id"],
        row["subject"],
        sender,
        [_mailbox(item.get("name"), item.get("address")) for item in row["to_addresses"] or []],
        [_mailbox(item.get("name"), item.get("address")) for item in row["cc_addresses"] or []],
        row["date"],
        folders,
        text,
    )


def thread_keys(database_url: str, key: str) -> list[str]:
    """Every stored message of `key`'s thread in its account (the message alone if it has none)."""
    with engine_for(database_url).connect() as connection:
        row = connection.execute(
            sa.select(parsed_emails.c.account, parsed_emails.c.thread_id).where(parsed_emails.c.message_key == key)
        ).one_or_none()
        if row is None or row.thread_id is None:
            return [key]
        return sorted(
            connection.execute(
                sa.select(parsed_emails.c.message_key).where(
                    parsed_emails.c.account == row.account, parsed_emails.c.thread_id == row.thread_id
                )
            ).scalars()
        )
