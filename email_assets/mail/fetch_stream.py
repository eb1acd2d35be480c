"""A streaming reader for one `UID FETCH` response, on top of aioimaplib's transport.

aioimaplib handles every response line in Python, one recursive call per line, with a
timer reset per line, and only hands the response over when the command completes: a
10,000-message FETCH is held whole in memory and costs ~6x a bare imaplib read. For the
one command that moves nearly all the bytes, this reader borrows the connection's
transport (`transport.set_protocol`), scans a byte buffer for literals, and hands each
message over as soon as it is complete, as its response text and its literal, copied once
out of the buffer; the connection goes back to aioimaplib when the tagged completion
arrives. Everything else (login, SELECT, SEARCH, STATUS) stays on
aioimaplib.

The server decides what it sends, so the reader hands over only answers to the UIDs
asked, once each (a `* 1 FETCH (UID 999 ...)` for UID 1 is dropped and counted, see
`FetchTally`); a body literal over `max_message_bytes` is read past without being kept;
and the wait ends when no asked-for answer (or byte of one) has come for `timeout`
seconds, or at the command's overall deadline: unsolicited `FLAGS` updates, however
many, are not progress.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

from email_assets.mail.imap_wire import DEFAULT_LIMITS, MAX_UID, WireLimits

_LITERAL = re.compile(rb"\{(\d{1,20})\}\r\n")
_UID = re.compile(rb"\bUID (\d{1,10})(?!\d)")
_COMPACT_AT = 1 << 20
# Messages handed over but not yet taken: above this the socket stops being read, so a
# slow store bounds memory instead of buffering a whole day.
_PAUSE_ABOVE = 64  # reads (of up to 256 KB each) waiting to be taken
_RESUME_BELOW = 16


FetchResponse = tuple[bytes, bytes | None]
"""One message's FETCH response: its text ("5 FETCH (UID 9 ... BODY[] ... )", the literal
left out) and its one literal, if it has one."""


class FetchStreamError(Exception):
    """The server ended the FETCH with NO/BAD, the connection went away, or the server
    stopped answering what was asked (no progress, or past the overall deadline)."""


@dataclass
class FetchTally:
    """What a FETCH's server sent besides the answers asked for: counted, never stored."""

    unsolicited: int = 0  # FETCH responses that answer nothing asked (flag updates)
    unasked: int = 0  # answers (a date or a body) for a UID not asked, or asked and answered already
    oversized: list[tuple[int | None, int]] = field(default_factory=list)  # (UID, literal size) read past


def _uid_of(text: bytes) -> int | None:
    match = _UID.search(text)
    return int(match.group(1)) if match is not None and 0 < int(match.group(1)) <= MAX_UID else None


class _Reader(asyncio.Protocol):
    def __init__(
        self,
        tag: bytes,
        queue: asyncio.Queue,
        original: asyncio.Protocol,
        transport,  # noqa: ANN001
        asked: Collection[int],
        limits: WireLimits,
        tally: FetchTally,
    ) -> None:
        self._tag = tag
        self._tagged = tag + b" "
        self._transport = transport
        self.paused = False
        self._queue = queue
        self._original = original
        self.asked = asked
        self._answered: set[int] = set()
        self.limits = limits
        self.tally = tally
        self.progressed_at = asyncio.get_running_loop().time()
        self.body_bytes = 0  # announced by answers asked for: they extend the deadline
        self._buffer = bytearray()
        self._position = 0
        self._header: bytes | None = None  # the text before the literal of the current message
        self._header_uid: int | None = None
        self._header_wanted = False  # its literal answers a UID asked: its bytes are progress
        self._literal: bytes | None = None
        self._need = 0
        self._skip = 0  # bytes of an oversized literal still to read past
        self._completed: list[FetchResponse] = []
        self._final: Exception | bool | None = None
        self._final_sent = False
        self.done = False
        self.failed = False  # past a bound: the connection cannot be handed back
        self.wants_body = True

    def data_received(self, data: bytes) -> None:
        if self._header_wanted:
            self.progressed_at = asyncio.get_running_loop().time()  # bytes of an asked body
        self._buffer += data
        self._completed = []
        self._parse()
        if self._completed:  # one hand-over per read, not per message
            self.progressed_at = asyncio.get_running_loop().time()
            self._queue.put_nowait(self._completed)
        if self._final is not None and not self._final_sent:
            self._final_sent = True
            self._queue.put_nowait(self._final)

    def connection_lost(self, exc: Exception | None) -> None:
        self._queue.put_nowait(FetchStreamError(f"connection lost ({exc or 'closed by server'})"))
        self._original.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return None

    def _fail(self, reason: str) -> None:
        self.done = self.failed = True
        self._final = FetchStreamError(reason)
        self._transport.abort()

    def _parse(self) -> None:
        buffer = self._buffer
        while not self.done:
            if self._skip:
                skipped = min(self._skip, len(buffer) - self._position)
                self._position += skipped
                self._skip -= skipped
                if self._skip:
                    break
                continue
            if self._need:
                if len(buffer) - self._position < self._need:
                    break
                end = self._position + self._need
                with memoryview(buffer) as view:  # one copy; a bytearray slice would add another
                    self._literal = bytes(view[self._position : end])
                self._position, self._need = end, 0
                continue
            newline = buffer.find(b"\r\n", self._position)
            if newline < 0:
                if len(buffer) - self._position > self.limits.max_line_bytes:
                    self._fail(f"FETCH answered with a line longer than {self.limits.max_line_bytes} bytes")
                break
            if self._header is None and self._is_noise(self._position, newline):
                self._position = newline + 2
                continue
            with memoryview(buffer) as view:
                line = bytes(view[self._position : newline + 2])
            self._position = newline + 2
            self._line(line)
        if self._position > _COMPACT_AT or self._position == len(buffer):
            del buffer[: self._position]
            self._position = 0

    def _is_noise(self, start: int, end: int) -> bool:
        """A line that cannot answer what was asked (no literal, no date where dates were
        asked, not our tag): counted where it is a FETCH, never copied, so a flood of
        unsolicited `FLAGS` costs no allocation per line."""
        buffer = self._buffer
        if end == start or buffer[end - 1] == 0x7D or buffer.startswith(self._tagged, start, end):  # 0x7D: "}"
            return False
        if not self.wants_body and buffer.find(b"INTERNALDATE", start, end) >= 0:
            return False
        if buffer.find(b" FETCH (", start, min(end, start + 30)) >= 0:
            self.tally.unsolicited += 1
        return True

    def _line(self, line: bytes) -> None:
        if self._header is None:
            if line.startswith(self._tag + b" "):
                self.done = True
                status = line[len(self._tag) + 1 :].strip()
                self._final = True if status.startswith(b"OK") else FetchStreamError(status.decode("utf-8", "replace"))
                return
            if line.startswith(b"* ") and b" FETCH (" in line[:30]:
                literal = _LITERAL.search(line)
                if literal and literal.end() == len(line):
                    self._header = line[2 : literal.start()]
                    self._header_uid = _uid_of(self._header)
                    self._literal_announced(int(literal.group(1)))
                else:  # a FETCH without a literal (dates only, or a flag update): complete as it is
                    self._complete(line[2:-2], None)
            return  # other untagged data (EXISTS, EXPUNGE...) does not concern this read
        # The line after a literal closes the message, possibly with more items first; a
        # second literal (never asked for) is read past.
        self._header += b" " + line[:-2]
        if len(self._header) > self.limits.max_line_bytes:  # endless `{0}` literals would grow it forever
            self._fail(f"FETCH answered with a response longer than {self.limits.max_line_bytes} bytes")
            return
        literal = _LITERAL.search(line)
        if literal and literal.end() == len(line):
            self._header = self._header[: len(self._header) - len(literal.group(0)) + 2]
            self._skip = int(literal.group(1))
            return
        header, body = self._header, self._literal
        self._header, self._header_uid, self._header_wanted, self._literal = None, None, False, None
        if body is not None:
            self._complete(header, body)
        if not self.paused and self._queue.qsize() > _PAUSE_ABOVE:
            self.paused = True
            self._transport.pause_reading()

    def _literal_announced(self, size: int) -> None:
        """Keep a body literal up to `max_message_bytes`; read past a bigger one, whatever
        RFC822.SIZE said, and count it."""
        uid = self._header_uid
        self._header_wanted = uid in self.asked and uid not in self._answered
        if self._header_wanted:
            self.body_bytes += min(size, self.limits.max_message_bytes)
        if size > self.limits.max_message_bytes:
            self.tally.oversized.append((uid, size))
            self._skip = size
            if uid is not None and self._header_wanted:
                self._answered.add(uid)  # handled: a second announcement earns no more time
        else:
            self._need = size
            if size == 0:
                self._literal = b""

    def _complete(self, text: bytes, body: bytes | None) -> None:
        """Hand over an answer to a UID asked and not yet answered; count anything else."""
        if (body is None) if self.wants_body else (b"INTERNALDATE" not in text):
            self.tally.unsolicited += 1  # a flag update, with or without its UID
            return
        uid = _uid_of(text)
        if uid is None or uid not in self.asked or uid in self._answered:
            self.tally.unasked += 1
        else:
            self._answered.add(uid)
            self._completed.append((text, body))

    def taken(self) -> None:
        if self.paused and self._queue.qsize() < _RESUME_BELOW:
            self.paused = False
            self._transport.resume_reading()


async def stream_fetch(
    protocol,  # noqa: ANN001 - aioimaplib's protocol
    command: str,
    timeout: float,
    asked: Collection[int],
    limits: WireLimits = DEFAULT_LIMITS,
    tally: FetchTally | None = None,
    wants_body: bool = True,
) -> AsyncIterator[list[FetchResponse]]:
    """Send `UID FETCH ...` for the UIDs `asked` on aioimaplib's connection and yield, per
    socket read, the answers completed by it: with `wants_body`, responses with a body
    literal; without, responses with an INTERNALDATE. Any other FETCH response is counted
    in `tally`, never handed over.

    Ends with `FetchStreamError` after `timeout` seconds without progress on what was
    asked, or at the overall deadline: `timeout`, plus `seconds_per_message` per UID asked,
    plus the time the bodies announced take at `min_bytes_per_second`.
    """
    transport = protocol.transport
    if transport is None or transport.is_closing():
        raise FetchStreamError("connection lost (closed)")
    loop = asyncio.get_running_loop()
    start = loop.time()
    tag = protocol.new_tag()
    queue: asyncio.Queue = asyncio.Queue()
    reader = _Reader(tag.encode("ascii"), queue, protocol, transport, asked, limits, tally or FetchTally())
    reader.wants_body = wants_body
    transport.set_protocol(reader)
    transport.write(f"{tag} {command}\r\n".encode("ascii"))
    try:
        while True:
            item = await _next(queue, reader, timeout, start)
            reader.taken()
            if item is True:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        transport.set_protocol(protocol)
        if reader.paused:
            transport.resume_reading()
        if not reader.done or reader.failed:
            transport.abort()  # abandoned half-way: the rest of the response would confuse aioimaplib


async def _next(queue: asyncio.Queue, reader: _Reader, timeout: float, start: float) -> object:
    """The next hand-over, waiting while the reader makes progress and the deadline allows."""
    loop = asyncio.get_running_loop()
    limits = reader.limits
    while True:
        now = loop.time()
        allowance = limits.seconds_per_message * len(reader.asked) + reader.body_bytes / limits.min_bytes_per_second
        deadline = start + timeout + allowance
        idle_end = reader.progressed_at + timeout
        if now >= idle_end and idle_end <= deadline:  # whichever came first, if a busy loop saw both late
            raise FetchStreamError(f"no data for {timeout:.0f}s during FETCH")
        if now >= deadline:
            raise FetchStreamError(f"FETCH not complete within its deadline of {deadline - start:.0f}s")
        try:
            return await asyncio.wait_for(queue.get(), min(deadline, idle_end) - now)
        except TimeoutError:
            continue
