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
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

_LITERAL = re.compile(rb"\{(\d+)\}\r\n")
_COMPACT_AT = 1 << 20
# Messages handed over but not yet taken: above this the socket stops being read, so a
# slow store bounds memory instead of buffering a whole day.
_PAUSE_ABOVE = 64  # reads (of up to 256 KB each) waiting to be taken
_RESUME_BELOW = 16


FetchResponse = tuple[bytes, bytes | None]
"""One message's FETCH response: its text ("5 FETCH (UID 9 ... BODY[] ... )", the literal
left out) and its one literal, if it has one."""


class FetchStreamError(Exception):
    """The server ended the FETCH with NO/BAD or the connection went away."""


class _Reader(asyncio.Protocol):
    def __init__(self, tag: bytes, queue: asyncio.Queue, original: asyncio.Protocol, transport) -> None:  # noqa: ANN001
        self._tag = tag
        self._transport = transport
        self.paused = False
        self._queue = queue
        self._original = original
        self._buffer = bytearray()
        self._position = 0
        self._header: bytes | None = None  # the text before the literal of the current message
        self._literal: bytes | None = None
        self._need = 0
        self._completed: list[FetchResponse] = []
        self._final: Exception | bool | None = None
        self._final_sent = False
        self.done = False

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._completed = []
        self._parse()
        if self._completed:  # one hand-over per read, not per message
            self._queue.put_nowait(self._completed)
        if self._final is not None and not self._final_sent:
            self._final_sent = True
            self._queue.put_nowait(self._final)

    def connection_lost(self, exc: Exception | None) -> None:
        self._queue.put_nowait(FetchStreamError(f"connection lost ({exc or 'closed by server'})"))
        self._original.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return None

    def _parse(self) -> None:
        buffer = self._buffer
        while not self.done:
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
                break
            line = bytes(buffer[self._position : newline + 2])
            self._position = newline + 2
            self._line(line)
        if self._position > _COMPACT_AT:
            del buffer[: self._position]
            self._position = 0

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
                    self._need = int(literal.group(1))
                    if self._need == 0:
                        self._literal = b""
                else:  # a FETCH without a literal (dates only, or a flag update): complete as it is
                    self._completed.append((line[2:-2], None))
            return  # other untagged data (EXISTS, EXPUNGE...) does not concern this read
        # The line after a literal closes the message, possibly with more items first.
        self._completed.append((self._header + b" " + line[:-2], self._literal))
        self._header, self._literal = None, None
        if not self.paused and self._queue.qsize() > _PAUSE_ABOVE:
            self.paused = True
            self._transport.pause_reading()

    def taken(self) -> None:
        if self.paused and self._queue.qsize() < _RESUME_BELOW:
            self.paused = False
            self._transport.resume_reading()


async def stream_fetch(protocol, command: str, timeout: float) -> AsyncIterator[list[FetchResponse]]:  # noqa: ANN001
    """Send `UID FETCH ...` on aioimaplib's connection and yield, per socket read, the
    messages completed by it."""
    transport = protocol.transport
    tag = protocol.new_tag()
    queue: asyncio.Queue = asyncio.Queue()
    reader = _Reader(tag.encode("ascii"), queue, protocol, transport)
    transport.set_protocol(reader)
    transport.write(f"{tag} {command}\r\n".encode("ascii"))
    try:
        while True:
            item = await asyncio.wait_for(queue.get(), timeout)
            reader.taken()
            if item is True:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    except TimeoutError:
        raise FetchStreamError(f"no data for {timeout:.0f}s during FETCH") from None
    finally:
        transport.set_protocol(protocol)
        if reader.paused:
            transport.resume_reading()
        if not reader.done:  # abandoned half-way: the rest of the response would confuse aioimaplib
            transport.abort()
