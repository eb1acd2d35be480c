"""A loopback proxy that gives Dovecot 2.3 the message ids of Gmail or of RFC 8474.

Dovecot 2.3 offers neither X-GM-EXT-1 nor OBJECTID, but it has a per-message GUID
(`X-GUID`, for Maildir the file's base name) that behaves like both: it stays with a
message through COPY and survives a UIDVALIDITY change. The proxy advertises the dialect's
capability, asks Dovecot for X-GUID where the client asks for the dialect's ids, and
answers with ids derived from it. Everything else, the bodies included, is Dovecot's own.

What this cannot show is Gmail itself (its labels, its All Mail folder): that needs a real
Gmail account.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Callable

from email_assets_tests.tcp_proxy import LoopbackProxy

_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
_CAPABILITY = re.compile(rb"(CAPABILITY [^\]\r\n]*)")
_X_GUID = re.compile(rb'X-GUID ("[^"]*"|[^ )]+)')
DIALECTS = {
    "gmail": (b"X-GM-EXT-1", b"X-GM-MSGID", b"X-GM-THRID"),
    "objectid": (b"OBJECTID", b"EMAILID", b"THREADID"),
}


def dialect_ids(dialect: str, guid: bytes) -> tuple[str, str]:
    """(message id, thread id) the proxy reports for a Dovecot GUID.

    Gmail's are unsigned 64-bit decimals, RFC 8474's are 1-255 letters, digits, - and _.
    Dovecot has no thread ids, so each message is its own thread here.
    """
    digest = hashlib.sha256(guid).digest()
    if dialect == "gmail":
        return str(int.from_bytes(digest[:8]) >> 1), str(int.from_bytes(digest[8:16]) >> 1)
    return "M" + digest[:12].hex(), "T" + digest[12:24].hex()


class ServerIdsProxy(LoopbackProxy):
    """Forwards 127.0.0.1:port to Dovecot's plaintext port, speaking `dialect` on top."""

    def __init__(self, target_port: int, dialect: str) -> None:
        self.dialect = dialect
        self.capability, self.message_item, self.thread_item = DIALECTS[dialect]
        self.bodies_served = 0
        super().__init__(target_port)

    def _serve(self, client: socket.socket, server: socket.socket) -> None:
        threading.Thread(target=self._pump, args=(client, server, self._from_client), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, self._from_server), daemon=True).start()

    def _from_client(self, line: bytes) -> bytes:
        if b" FETCH " in line:
            line = line.replace(b" " + self.thread_item, b"").replace(self.message_item, b"X-GUID")
        return line

    def _from_server(self, line: bytes) -> bytes:
        line = _CAPABILITY.sub(lambda match: match.group(1) + b" " + self.capability, line)
        if b"BODY[]" in line and b" FETCH (" in line:
            self.bodies_served += 1
        return _X_GUID.sub(self._ids_for, line)

    def _ids_for(self, match: re.Match[bytes]) -> bytes:
        message_id, thread_id = dialect_ids(self.dialect, match.group(1).strip(b'"'))
        if self.dialect == "gmail":
            return f"X-GM-MSGID {message_id} X-GM-THRID {thread_id}".encode()
        return f"EMAILID ({message_id}) THREADID ({thread_id})".encode()

    def _pump(self, source: socket.socket, sink: socket.socket, rewrite: Callable[[bytes], bytes]) -> None:
        """Rewrites protocol lines; literals (message bodies) pass through untouched."""
        pending = b""
        literal_left = 0
        try:
            while data := source.recv(65536):
                pending += data
                out = []
                while pending:
                    if literal_left:
                        piece = pending[:literal_left]
                        out.append(piece)
                        pending = pending[len(piece) :]
                        literal_left -= len(piece)
                        continue
                    end = pending.find(b"\r\n")
                    if end < 0:
                        break
                    line, pending = pending[: end + 2], pending[end + 2 :]
                    line = rewrite(line)
                    if literal := _LITERAL_AT_END.search(line):
                        literal_left = int(literal.group(1))
                    out.append(line)
                sink.sendall(b"".join(out))
        except OSError:
            pass
        finally:
            self._close_both(source, sink)
