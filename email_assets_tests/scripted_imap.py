"""A loopback IMAP server that answers from a script: recorded replies, with whatever
unsolicited responses a test wants interleaved.

Greeting, CAPABILITY, LOGIN and LOGOUT are answered as Dovecot answers them; any other
command is answered with the untagged lines of the first script entry whose prefix it
starts with (`{tag}` in a line becomes the command's tag), then `tag OK`; a `CLOSE` line
instead drops the connection there, as a server going away mid-answer. Every command
received is kept in `commands`, so a test can also check what the client asked.

A hostile server's answers are too big to script line by line: a `Stream` in a script
entry writes its chunks as they are drawn (a gigabyte literal, endless unsolicited
responses), waiting for the client to read each and stopping when the client hangs up
or after `seconds`, so only what the client holds is measured, never the script.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

CLOSE = b"CLOSE"
CAPABILITIES = (
    b"IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SPECIAL-USE NAMESPACE UIDPLUS "
    b"LIST-EXTENDED ESEARCH CONDSTORE QRESYNC MOVE"
)


@dataclass(frozen=True)
class Stream:
    """Raw bytes written chunk by chunk (no CRLF added, no `{tag}` filled in), for at most
    `seconds`; `chunks` is called per command, so each answer starts afresh."""

    chunks: Callable[[], Iterable[bytes]]
    seconds: float = 120.0
    pause: float = 0.0  # between chunks: a server trickling its answer


def literal(size: int, chunk: bytes = b"x" * (1 << 20)) -> Stream:
    """`size` bytes of a literal, sent from one reused chunk (the script holds 1 MiB)."""

    def chunks() -> Iterable[bytes]:
        for start in range(0, size, len(chunk)):
            yield chunk[: min(len(chunk), size - start)]

    return Stream(chunks)


def endless(line: bytes, seconds: float = 120.0, per_chunk: int = 200) -> Stream:
    """`line` (CRLF added) over and over, `per_chunk` to a write, for `seconds`."""
    chunk = (line + b"\r\n") * per_chunk
    return Stream(lambda: itertools.repeat(chunk), seconds)


Line = bytes | Stream


@dataclass
class ScriptedImapServer:
    script: list[tuple[bytes, list[Line]]]
    capabilities: bytes = CAPABILITIES
    commands: list[bytes] = field(default_factory=list)
    port: int = 0

    def __enter__(self) -> ScriptedImapServer:
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        started.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:  # a Stream may still be writing: end it, close its socket
            self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up mid-answer: what a hostile-server test expects
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY " + self.capabilities + b"] ready.\r\n")
        while line := await reader.readline():
            tag, _, command = line.rstrip(b"\r\n").partition(b" ")
            self.commands.append(command)
            verb = command.split(b" ", 1)[0].upper()
            if verb == b"CAPABILITY":
                writer.write(b"* CAPABILITY " + self.capabilities + b"\r\n" + tag + b" OK Capability completed.\r\n")
            elif verb == b"LOGIN":
                writer.write(tag + b" OK Logged in\r\n")
            elif verb == b"LOGOUT":
                writer.write(b"* BYE Logging out\r\n" + tag + b" OK Logout completed.\r\n")
                await writer.drain()
                break
            else:
                lines = next((lines for prefix, lines in self.script if command.startswith(prefix)), None)
                if lines is None:
                    writer.write(tag + b" BAD Error in IMAP command: not in the script\r\n")
                elif CLOSE in lines:
                    await self._write(writer, tag, lines[: lines.index(CLOSE)])
                    break
                else:
                    await self._write(writer, tag, lines)
                    writer.write(tag + b" OK Completed.\r\n")
            await writer.drain()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, tag: bytes, lines: list[Line]) -> None:
        for untagged in lines:
            if isinstance(untagged, Stream):
                ends = time.monotonic() + untagged.seconds
                for chunk in untagged.chunks():
                    writer.write(chunk)
                    await writer.drain()
                    if untagged.pause:
                        await asyncio.sleep(untagged.pause)
                    if time.monotonic() > ends:
                        break
            else:
                writer.write(untagged.replace(b"{tag}", tag) + b"\r\n")
