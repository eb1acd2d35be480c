"""A loopback IMAP server that answers from a script: recorded replies, with whatever
unsolicited responses a test wants interleaved.

Greeting, CAPABILITY, LOGIN and LOGOUT are answered as Dovecot answers them; any other
command is answered with the untagged lines of the first script entry whose prefix it
starts with (`{tag}` in a line becomes the command's tag), then `tag OK`; a `CLOSE` line
instead drops the connection there, as a server going away mid-answer. Every command
received is kept in `commands`, so a test can also check what the client asked.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

CLOSE = b"CLOSE"
CAPABILITIES = (
    b"IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SPECIAL-USE NAMESPACE UIDPLUS "
    b"LIST-EXTENDED ESEARCH CONDSTORE QRESYNC MOVE"
)


@dataclass
class ScriptedImapServer:
    script: list[tuple[bytes, list[bytes]]]
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
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
                    for untagged in lines[: lines.index(CLOSE)]:
                        writer.write(untagged.replace(b"{tag}", tag) + b"\r\n")
                    await writer.drain()
                    break
                else:
                    for untagged in lines:
                        writer.write(untagged.replace(b"{tag}", tag) + b"\r\n")
                    writer.write(tag + b" OK Completed.\r\n")
            await writer.drain()
        writer.close()
