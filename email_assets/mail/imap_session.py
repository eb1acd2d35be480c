"""The questions a sync asks one authenticated IMAP connection, each batched.

One SEARCH per folder and day window, one FETCH of INTERNALDATEs for the UIDs we do not
know yet, bodies in `UID FETCH` batches, and, where the server has CONDSTORE/QRESYNC
(RFC 7162), what changed in a folder since a mod-sequence. Every answer is read by type
(`imap_wire`), so unsolicited responses are never taken for data. Folders are only ever
EXAMINEd: a sync must never change a flag or expunge.

A server is hostile input: a SEARCH answer naming more UIDs than the folder holds is a
one-line `ServerProtocolError`; a FETCH answer for a UID not asked is dropped and counted
(`ignored_answers`); a message with a malformed INTERNALDATE, or a body over
`WireLimits.max_message_bytes`, is skipped with a one-line entry in `defects`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import aioimaplib

from email_assets.errors import AccountError, ServerProtocolError
from email_assets.mail import imap_wire as wire
from email_assets.mail.command_reader import Reply, run_command
from email_assets.mail.fetch_stream import FetchResponse, FetchTally, stream_fetch
from email_assets.mail.mailbox_names import decode_mailbox_name, encode_mailbox_name
from email_assets.mail.records import FetchedMessage, MessageDate

FETCH_BATCH_SIZE = 500  # messages per store transaction
UIDS_PER_FETCH_COMMAND = 5000  # keeps the command line well under servers' 8-64 KB limits
EXCLUDED_SPECIAL_USE = {"\\Junk", "\\Trash"}
MAX_DEFECTS_KEPT = 100  # one-line defects kept per session; the rest are only counted


@dataclass(frozen=True)
class FolderStatus:
    folder: str
    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int = 0  # 0: the server keeps no mod-sequences (no CONDSTORE)


@dataclass
class FolderChanges:
    """What a CONDSTORE/QRESYNC server says changed in a folder since a mod-sequence."""

    flags: dict[int, tuple[str, ...]] = field(default_factory=dict)  # UID -> flags now
    vanished: wire.UidRanges = field(default_factory=wire.UidRanges)  # expunged UIDs (QRESYNC only), as ranges


@dataclass(frozen=True)
class ServerIds:
    """A server's own message and thread ids, where it offers them.

    A server id names the message, not its copy: Gmail gives one X-GM-MSGID to a message
    under all its labels, and an RFC 8474 EMAILID stays with a message through COPY and
    MOVE. Both outlive a UIDVALIDITY change. So a message already stored under its id is
    linked to a new folder or UID without downloading its body again.
    """

    capability: str
    message_item: str
    thread_item: str


GMAIL_IDS = ServerIds("X-GM-EXT-1", "X-GM-MSGID", "X-GM-THRID")
OBJECT_IDS = ServerIds("OBJECTID", "EMAILID", "THREADID")


class ImapSession:
    """One authenticated IMAP connection. Use `async with connect(...) as session`."""

    def __init__(
        self, client: aioimaplib.IMAP4, describe: str, timeout: float, limits: wire.WireLimits = wire.DEFAULT_LIMITS
    ) -> None:
        self._client = client
        self._describe = describe
        self._timeout = timeout
        self.limits = limits
        self._qresync_enabled = False
        self.selected: str | None = None
        self._selected_status: FolderStatus | None = None
        self.defects: list[str] = []  # per-message, one line each (the first MAX_DEFECTS_KEPT)
        self.defect_count = 0
        self._defect_lines: set[str] = set()
        self.ignored_answers = 0  # FETCH answers for UIDs not asked (or asked and answered already)

    def record_defect(self, text: str) -> None:
        """One message of the selected folder served unusably, once per message and reason."""
        line = f"{self.selected}: {text}"
        if line in self._defect_lines:
            return
        self._defect_lines.add(line)
        self.defect_count += 1
        if len(self.defects) < MAX_DEFECTS_KEPT:
            self.defects.append(line)

    def _protocol_error(self, what: str, error: wire.WireError) -> ServerProtocolError:
        return ServerProtocolError(f"{what} in {self.selected} on {self._describe}: {error}")

    @property
    def capabilities(self) -> set[str]:
        return {name.upper() for name in self._client.protocol.capabilities}

    @property
    def has_condstore(self) -> bool:
        return "CONDSTORE" in self.capabilities or "QRESYNC" in self.capabilities

    @property
    def has_qresync(self) -> bool:
        return "QRESYNC" in self.capabilities

    @property
    def server_ids(self) -> ServerIds | None:
        """Gmail's ids where offered (Gmail has no OBJECTID), else RFC 8474's, else none."""
        return next((ids for ids in (GMAIL_IDS, OBJECT_IDS) if ids.capability in self.capabilities), None)

    def _id_items(self) -> str:
        ids = self.server_ids
        return f" {ids.message_item} {ids.thread_item}" if ids else ""

    async def command(self, text: str, what: str) -> Reply:
        """Run one command; a NO or BAD becomes a one-line `AccountError` naming `what`."""
        reply = await run_command(self._client.protocol, text, self._timeout, self.limits)
        if not reply.ok:
            raise AccountError(f"{what} failed on {self._describe}: {reply.status} {reply.text}")
        return reply

    async def list_folders(self) -> list[tuple[str, set[str]]]:
        """(decoded name, attribute flags) of every selectable folder."""
        reply = await self.command('LIST "" "*"', "LIST")
        folders = []
        for wire_name, attributes in wire.list_entries(reply.untagged):
            if "\\Noselect" in attributes or "\\NonExistent" in attributes:
                continue
            folders.append((decode_mailbox_name(wire_name.decode("utf-8", "replace")), attributes))
        return folders

    async def default_folders(self) -> list[str]:
        """Every selectable folder except the SPECIAL-USE Junk and Trash ones."""
        folders = await self.list_folders()
        return [name for name, attributes in folders if not attributes & EXCLUDED_SPECIAL_USE]

    async def status(self, folder: str) -> FolderStatus:
        wire_name = encode_mailbox_name(folder)
        items = "UIDVALIDITY UIDNEXT MESSAGES" + (" HIGHESTMODSEQ" if self.has_condstore else "")
        reply = await self.command(f"STATUS {wire.quoted(wire_name)} ({items})", f"STATUS {folder}")
        found = wire.status_items(reply.untagged, wire_name)
        if "UIDVALIDITY" not in found or "UIDNEXT" not in found:
            raise AccountError(f"STATUS {folder} on {self._describe} gave no UIDVALIDITY/UIDNEXT")
        return FolderStatus(
            folder, found["UIDVALIDITY"], found["UIDNEXT"], found.get("MESSAGES", 0), found.get("HIGHESTMODSEQ", 0)
        )

    async def enable_qresync(self) -> bool:
        """Turn QRESYNC on for this connection (RFC 7162 3.2.3), where offered; once."""
        if self.has_qresync and not self._qresync_enabled:
            reply = await self.command("ENABLE QRESYNC", "ENABLE QRESYNC")
            self._qresync_enabled = any(
                b"QRESYNC" in response.rest.upper().split() for response in wire.of_kind(reply.untagged, "ENABLED")
            )
        return self._qresync_enabled

    async def examine(self, folder: str) -> FolderStatus:
        """Select read-only: a sync must never change flags (\\Seen) or expunge."""
        reply = await self.command(f"EXAMINE {wire.quoted(encode_mailbox_name(folder))}", f"EXAMINE {folder}")
        state = wire.selected_state(reply.untagged)
        if "UIDVALIDITY" not in state:
            raise AccountError(f"EXAMINE {folder} on {self._describe} gave no UIDVALIDITY")
        self.selected = folder
        self._client.protocol.state = aioimaplib.SELECTED  # for aioimaplib's LOGOUT bookkeeping
        self._selected_status = FolderStatus(
            folder, state["UIDVALIDITY"], state.get("UIDNEXT", 0), state.get("EXISTS", 0), state.get("HIGHESTMODSEQ", 0)
        )
        return self._selected_status

    def _most_uids(self, reply: Reply) -> int:
        """How many UIDs the selected folder can hold now: its EXISTS at EXAMINE or any later
        `* n EXISTS` in `reply` (mail may arrive meanwhile). More is a protocol error."""
        exists = [response.number or 0 for response in wire.of_kind(reply.untagged, "EXISTS")]
        return max([self._selected_status.messages if self._selected_status else 0, *exists])

    def _uidnext(self) -> int:
        """The selected folder's UIDNEXT: no UID at or above it can have been stored."""
        uidnext = self._selected_status.uidnext if self._selected_status else 0
        return uidnext or wire.MAX_UID + 1

    async def _uid_search(self, criteria: str) -> list[int]:
        """ESEARCH where offered: one compact set (`1:100000`) instead of every UID spelled out."""
        try:
            if "ESEARCH" in self.capabilities:
                command = f"UID SEARCH RETURN (ALL) {criteria}"
                reply = await run_command(self._client.protocol, command, self._timeout, self.limits)
                if reply.ok:
                    return wire.search_uids(reply.untagged, reply.tag, most=self._most_uids(reply))
            reply = await self.command(f"UID SEARCH {criteria}", "SEARCH")
            return wire.search_uids(reply.untagged, most=self._most_uids(reply))
        except wire.WireError as error:
            raise self._protocol_error("SEARCH", error) from None

    async def search_uids(self, since: dt.date, before: dt.date) -> list[int]:
        """UIDs whose INTERNALDATE falls in [since, before) in the *server's* time zone."""
        return await self._uid_search(f"SINCE {wire.imap_date(since)} BEFORE {wire.imap_date(before)}")

    async def search_uids_from(self, first_uid: int) -> list[int]:
        """UIDs >= first_uid. `N:*` always matches the highest UID, so filter it."""
        return [uid for uid in await self._uid_search(f"UID {first_uid}:*") if uid >= first_uid]

    async def all_uids(self) -> list[int]:
        """Every UID of the selected folder: the list a server without QRESYNC is diffed by."""
        return await self._uid_search("ALL")

    async def flags_of(self, uids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """UID -> flags now, for the given UIDs of the selected folder (gone ones are absent)."""
        flags: dict[int, tuple[str, ...]] = {}
        for start in range(0, len(uids), UIDS_PER_FETCH_COMMAND):
            batch = wire.uid_set(uids[start : start + UIDS_PER_FETCH_COMMAND])
            reply = await self.command(f"UID FETCH {batch} (UID FLAGS)", "FETCH FLAGS")
            flags.update(wire.fetched_flags(reply.untagged))
        asked = set(uids)  # a QRESYNC server tells of other UIDs' flags too: not asked, not kept
        return {uid: value for uid, value in flags.items() if uid in asked}

    async def all_flags(self) -> dict[int, tuple[str, ...]]:
        """UID -> flags of every message of the selected folder."""
        reply = await self.command("UID FETCH 1:* (UID FLAGS)", "FETCH FLAGS")
        return wire.fetched_flags(reply.untagged)

    async def changes_since(self, modseq: int) -> FolderChanges:
        """Flags changed since `modseq` in the selected folder and, with QRESYNC enabled,
        the UIDs expunged since then (RFC 7162 3.1.4.1 and 3.2.6)."""
        vanished = " VANISHED" if self._qresync_enabled else ""
        reply = await self.command(f"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {modseq}{vanished})", "FETCH CHANGEDSINCE")
        try:
            gone = wire.vanished_uids(reply.untagged, self._uidnext())
        except wire.WireError as error:
            raise self._protocol_error("VANISHED", error) from None
        return FolderChanges(wire.fetched_flags(reply.untagged), gone)

    async def _answers(self, uids: Sequence[int], items: str, wants_body: bool) -> AsyncIterator[list[FetchResponse]]:
        """Streamed answers to `UID FETCH uids (items)`, a command per UIDS_PER_FETCH_COMMAND
        UIDs, each answer for a UID asked and only once; whatever else came is counted."""
        for start in range(0, len(uids), UIDS_PER_FETCH_COMMAND):
            asked = uids[start : start + UIDS_PER_FETCH_COMMAND]
            command = f"UID FETCH {wire.uid_set(asked)} ({items})"
            tally = FetchTally()
            try:
                async for completed in stream_fetch(
                    self._client.protocol, command, self._timeout, set(asked), self.limits, tally, wants_body
                ):
                    yield completed
            finally:
                self._count(tally)

    def _count(self, tally: FetchTally) -> None:
        self.ignored_answers += tally.unasked
        for uid, size in tally.oversized:
            self.record_defect(
                f"UID {uid}: body of {size} bytes over the {self.limits.max_message_bytes} allowed; skipped"
            )

    def _dated(self, text: bytes, body: bytes | None = None) -> dict | None:
        """The items of one answer, or None (with a defect) if its INTERNALDATE is malformed:
        without a date the message has no day to be stored under."""
        item = wire.parse_fetch_response(text, body)
        if item is None or "internaldate" in item:
            return item
        if "internaldate_error" in item:
            self.record_defect(f"UID {item['uid']}: malformed INTERNALDATE {item['internaldate_error']!r}; skipped")
        else:
            self.record_defect(f"UID {item['uid']}: answered without an INTERNALDATE; skipped")
        return None

    async def message_dates(self, uids: Sequence[int], with_ids: bool = False) -> list[MessageDate]:
        """INTERNALDATE and size of the given UIDs, without bodies; `with_ids` adds the
        flags and the server's ids (see `ServerIds`), where it has them."""
        items = "UID INTERNALDATE RFC822.SIZE" + (" FLAGS" + self._id_items() if with_ids else "")
        dates: list[MessageDate] = []
        async for completed in self._answers(uids, items, wants_body=False):
            for text, _ in completed:
                if (item := self._dated(text)) is not None:
                    dates.append(
                        MessageDate(
                            item["uid"],
                            item["internaldate"],
                            item.get("size", 0),
                            item.get("flags", ()),
                            item.get("server_id"),
                            item.get("thread_id"),
                        )
                    )
        return dates

    async def fetch_messages(
        self, folder: str, uidvalidity: int, uids: Sequence[int], batch_size: int = FETCH_BATCH_SIZE
    ) -> AsyncIterator[list[FetchedMessage]]:
        """Bodies exactly as served (BODY.PEEK[] leaves \\Seen alone), `batch_size` at a time,
        streamed from few large FETCH commands (see `fetch_stream`). The size kept is the
        body's own: a server's RFC822.SIZE is only what it announced."""
        batch: list[FetchedMessage] = []
        items = f"UID INTERNALDATE FLAGS RFC822.SIZE{self._id_items()} BODY.PEEK[]"
        async for completed in self._answers(uids, items, wants_body=True):
            for text, body in completed:
                item = self._dated(text, body)
                if item is None or body is None:
                    continue
                batch.append(
                    FetchedMessage(
                        folder=folder,
                        uidvalidity=uidvalidity,
                        uid=item["uid"],
                        internaldate=item["internaldate"],
                        flags=item.get("flags", ()),
                        size=len(body),
                        raw=body,
                        server_id=item.get("server_id"),
                        thread_id=item.get("thread_id"),
                    )
                )
            while len(batch) >= batch_size:  # one socket read may complete many messages
                yield batch[:batch_size]
                batch = batch[batch_size:]
        if batch:
            yield batch

    async def logout(self) -> None:
        transport = self._client.protocol.transport
        if transport is None or transport.is_closing():
            return  # the connection is gone: a LOGOUT would only wait out its 5 s timeout
        try:
            await asyncio.wait_for(self._client.logout(), 5)
        except Exception:  # noqa: BLE001 - the connection is being dropped either way
            pass
        finally:
            transport = self._client.protocol.transport
            if transport is not None:
                transport.close()
