"""What the sync learns about one copy of a message on a server, as plain values.

Shared by the IMAP session that reads them and the store that keeps them, so the store
needs nothing of the protocol.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class MessageDate:
    """A message's place and date on the server, without its body."""

    uid: int
    internaldate: dt.datetime
    size: int
    flags: tuple[str, ...] = ()
    server_id: str | None = None
    thread_id: str | None = None


@dataclass(frozen=True)
class FetchedMessage:
    """A message downloaded exactly as served, with where it was found."""

    folder: str
    uidvalidity: int
    uid: int
    internaldate: dt.datetime
    flags: tuple[str, ...]
    size: int
    raw: bytes
    server_id: str | None = None
    thread_id: str | None = None


def stored_flags(flags: tuple[str, ...] | list[str]) -> str:
    """Flags as the store keeps them: sorted, space-joined, without `\\Recent`, which only
    says that this session is the first to see the message and changes with every login."""
    return " ".join(sorted({flag for flag in flags if flag.lower() != "\\recent"}))
