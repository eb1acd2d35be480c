"""Run one IMAP command on aioimaplib's connection and read every response it draws, by type.

aioimaplib routes untagged responses by name to whichever command it guesses they belong
to, strips that name, and drops the rest: an `* ESEARCH` or `* VANISHED` is "ignored",
and `* ` is removed wherever it occurs in a line (so a folder named "a* b" comes back
"ab"). For the commands whose answers are data (LIST, STATUS, EXAMINE, SEARCH, the FLAGS
FETCH of QRESYNC), this reader borrows the transport as `fetch_stream` does, frames
lines and literals itself, and hands back every untagged response whole; `imap_wire`
reads them by type.

A server decides how much it sends, so what one command may hold is bounded
(`WireLimits`): a literal here is a folder name (1 MiB at most, not the gigabyte it may
announce), a line, the whole reply and its count of responses; the timeout is an overall
deadline for the command, which endless unsolicited responses cannot push back.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from email_assets.mail.imap_wire import DEFAULT_LIMITS, Untagged, WireLimits

_LITERAL_END = re.compile(rb"\{(\d+)\}$")


class CommandError(Exception):
    """The connection went away or stayed silent during a command."""


@dataclass
class Reply:
    """A command's tagged completion (`OK`, `NO`, `BAD`), its text, and its untagged responses."""

    status: str
    text: str
    tag: str = ""
    untagged: list[Untagged] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "OK"


class _Reader(asyncio.Protocol):
    def __init__(
        self, tag: bytes, original: asyncio.Protocol, done: asyncio.Future[Reply], limits: WireLimits = DEFAULT_LIMITS
    ) -> None:
        self._tag = tag
        self._original = original
        self._done = done
        self._limits = limits
        self._buffer = bytearray()
        self._untagged: list[Untagged] = []
        self._text: list[bytes] = []  # lines of the response being read, around its literals
        self._literals: list[bytes] = []
        self._need = 0
        self._held = 0  # bytes of untagged responses kept so far
        self.verb = "command"

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        position = 0
        buffer = self._buffer
        while not self._done.done():
            if self._need:
                if len(buffer) - position < self._need:
                    break
                self._literals.append(bytes(buffer[position : position + self._need]))
                position += self._need
                self._need = 0
                continue
            newline = buffer.find(b"\r\n", position)
            if newline < 0:
                if len(buffer) - position > self._limits.max_line_bytes:
                    self._fail(f"a response line longer than {self._limits.max_line_bytes} bytes")
                break
            self._line(bytes(buffer[position:newline]))
            position = newline + 2
        del buffer[:position]

    def _fail(self, reason: str) -> None:
        """A server past a bound: the command fails in one line, the rest is never read."""
        if not self._done.done():
            self._done.set_exception(CommandError(f"{self.verb} answered with {reason}"))

    def _line(self, line: bytes) -> None:
        if not self._text:
            if line.startswith(self._tag + b" "):
                status, _, text = line[len(self._tag) + 1 :].partition(b" ")
                reply = Reply(
                    status.decode("ascii", "replace").upper(),
                    text.decode("utf-8", "replace"),
                    self._tag.decode("ascii"),
                )
                reply.untagged = self._untagged
                self._done.set_result(reply)
                return
            if not line.startswith(b"* "):
                return  # a continuation request; none of our commands sends a literal
            line = line[2:]
        self._text.append(line)
        self._held += len(line)
        literal = _LITERAL_END.search(line)
        if literal is not None:
            size = int(literal.group(1)) if len(literal.group(1)) <= 20 else self._limits.max_literal_bytes + 1
            if size > self._limits.max_literal_bytes:
                self._fail(f"a literal of {size} bytes, over the {self._limits.max_literal_bytes} allowed here")
                return
            self._need = size
            self._held += size
            if self._need == 0:
                self._literals.append(b"")
        else:
            self._untagged.append(Untagged(b"".join(self._text), tuple(self._literals)))
            self._text, self._literals = [], []
        if self._held > self._limits.max_reply_bytes or len(self._untagged) > self._limits.max_responses:
            self._fail(f"a reply over {self._limits.max_reply_bytes} bytes or {self._limits.max_responses} responses")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(CommandError(f"connection lost ({exc or 'closed by server'})"))
        self._original.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return None


async def run_command(
    protocol,  # noqa: ANN001 - aioimaplib's protocol
    command: str,
    timeout: float,
    limits: WireLimits = DEFAULT_LIMITS,
) -> Reply:
    """Send `command` with a fresh tag on aioimaplib's connection; its reply, read whole
    within `timeout` seconds overall."""
    transport = protocol.transport
    if transport is None or transport.is_closing():
        raise CommandError("connection lost (closed)")
    tag = protocol.new_tag()
    done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
    reader = _Reader(tag.encode("ascii"), protocol, done, limits)
    reader.verb = " ".join(command.split(" ", 2)[:2]) if command.startswith("UID ") else command.split(" ", 1)[0]
    transport.set_protocol(reader)
    transport.write(f"{tag} {command}\r\n".encode())
    try:
        return await asyncio.wait_for(asyncio.shield(done), timeout)
    except TimeoutError:
        raise CommandError(f"no complete answer to {command.split(' ', 1)[0]} within {timeout:.0f}s") from None
    finally:
        transport.set_protocol(protocol)
        if not done.done() or done.exception() is not None:  # abandoned half-way or past a bound:
            done.cancel()  # the rest of the reply would confuse aioimaplib
            transport.abort()
