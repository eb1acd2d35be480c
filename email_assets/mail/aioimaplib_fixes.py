"""Where aioimaplib falls short for a sync that must not hang or leak: each fix in one place.

aioimaplib does the connection, greeting and LOGOUT; these functions patch what it gets
wrong there, and send LOGIN and AUTHENTICATE themselves (`send_credentials`), because
aioimaplib's command objects print their arguments: an unexpected answer to LOGIN raised
an error (and a DEBUG line) that held the password. Commands whose answers are data do
not go through it at all (see `command_reader`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator

import aioimaplib

from email_assets.errors import AccountError

REDACTED = "***"
_LIBRARY_LOGGER = logging.getLogger(aioimaplib.__name__ + ".aioimaplib")


def imap_quoted(text: str) -> str:
    """`text` as an RFC 3501 quoted string. aioimaplib sends the username as an atom, so a
    username with a space, `"` or `\\` could not log in."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def secret_forms(secret: str, username: str = "") -> list[str]:
    """Every spelling `secret` can take on the wire or in a log line, longest first.

    Raw (also a literal's content), IMAP-quoted with its escapes, each as Python prints
    str and bytes (aioimaplib logs `b'...'`, twice over when a server echoes a printed
    one), the base64 payloads of AUTHENTICATE PLAIN and XOAUTH2, and the base64 of the
    secret at each of the three alignments, which any other base64 payload holding it
    contains.
    """
    if not secret:
        return []
    forms: set[str] = set()
    for text in (secret, imap_quoted(secret)[1:-1]):
        forms.update((text, repr(text)[1:-1], repr(text.encode("utf-8"))[2:-1]))
    forms.update([repr(form.encode("utf-8"))[2:-1] for form in forms])  # a logged line holding a printed one
    for payload in (f"\0{username}\0{secret}", f"{username}\0{username}\0{secret}", xoauth2_payload(username, secret)):
        forms.add(base64.b64encode(payload.encode("utf-8")).decode("ascii"))
    forms.update(_base64_cores(secret.encode("utf-8")))
    return sorted(forms, key=len, reverse=True)


def _base64_cores(secret: bytes, shortest: int = 4) -> Iterator[str]:
    """The base64 characters that depend on `secret`'s bytes alone, for each alignment."""
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + secret).decode("ascii")
        # Character i carries bits [6i, 6i + 6); the secret's bits are [8 * offset, 8 * (offset + len)).
        core = encoded[-(-8 * offset // 6) : 8 * (offset + len(secret)) // 6]
        if len(core) >= shortest:
            yield core


def scrub(text: str, forms: Iterable[str]) -> str:
    """`text` with each of `forms` (longest first, see `secret_forms`) replaced by ***."""
    for form in forms:
        text = text.replace(form, REDACTED)
    return text


def xoauth2_payload(username: str, token: str) -> str:
    return f"user={username}\1auth=Bearer {token}\1\1"


class _RedactCredentials(logging.Filter):
    """Keeps every form of the credentials of open sessions out of log records.

    A filter rather than a level above DEBUG: whoever configures logging (Dagster's
    `python_logs`, a developer's basicConfig) can lower a level, and aioimaplib also logs
    what the server sent at INFO ("server says ...", "unknown data received"). It is
    attached to aioimaplib's logger and to asyncio's, which logs exceptions raised in a
    protocol callback with their text.
    """

    _COMMAND_LINE = re.compile(r"\b(AUTHENTICATE|LOGIN)\b.*", re.IGNORECASE | re.DOTALL)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()  # sessions open and close in several threads (sensor, runs)
        self._sessions: dict[int, list[str]] = {}
        self._keys = itertools.count(1)

    def register(self, forms: list[str]) -> int:
        with self._lock:
            key = next(self._keys)
            self._sessions[key] = forms
        return key

    def forget(self, key: int) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def _forms(self) -> list[str]:
        with self._lock:
            return sorted({form for forms in self._sessions.values() for form in forms}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        forms = self._forms()
        message = record.getMessage()
        cleaned = scrub(message, forms)
        if record.name == _LIBRARY_LOGGER.name and "Sending" in cleaned:
            cleaned = self._COMMAND_LINE.sub(r"\1 [credentials redacted]", cleaned)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and forms:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info), forms)
            record.exc_info = None
        return True


_REDACT = _RedactCredentials()
_LIBRARY_LOGGER.addFilter(_REDACT)
logging.getLogger("asyncio").addFilter(_REDACT)


def hide_in_logs(forms: list[str]) -> int:
    """Keep `forms` out of every aioimaplib and asyncio log record until `show_in_logs(key)`."""
    return _REDACT.register(forms)


def show_in_logs(key: int) -> None:
    _REDACT.forget(key)


def first_line(response: aioimaplib.Response) -> str:
    for line in reversed(response.lines):
        if isinstance(line, bytes) and line:
            return line.decode("utf-8", "replace")
    return response.result


def answer_sasl_error_challenges(protocol: aioimaplib.IMAP4ClientProtocol) -> None:
    """A refused XOAUTH2 token comes back as a `+ <error>` challenge that the client must
    answer with an empty line before the server says NO; aioimaplib never answers, so the
    login would hang until its timeout."""
    original = protocol._continuation

    def continuation(line: bytes) -> None:
        command = protocol.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE":
            protocol.transport.write(b"\r\n")
            return
        original(line)

    protocol._continuation = continuation


def _fail_commands(protocol: aioimaplib.IMAP4ClientProtocol, reason: Exception) -> None:
    """Fail every waiting command with `reason`, the way aioimaplib's own timeout does."""
    for command in [*protocol.pending_async_commands.values(), protocol.pending_sync_command]:
        if command is not None and not command._event.is_set():
            command._exception = reason
            command.close(b"connection lost", "NO")


def fail_pending_commands(protocol: aioimaplib.IMAP4ClientProtocol) -> Callable[[Exception | None], None]:
    """aioimaplib leaves commands waiting for their timeout when the server goes away;
    fail them at once, so a dropped connection is reported in milliseconds rather than
    after `timeout` seconds."""

    def on_connection_lost(error: Exception | None) -> None:
        _fail_commands(protocol, aioimaplib.Abort(f"connection lost ({error or 'closed by server'})"))

    return on_connection_lost


def contain_protocol_errors(protocol: aioimaplib.IMAP4ClientProtocol, clean: Callable[[str], str]) -> None:
    """An answer aioimaplib cannot place (a tag it did not send) raises out of
    `data_received`; asyncio then logs that error, command line included, and drops the
    connection. Fail the waiting commands with the error's text passed through `clean`
    instead, and close the connection: the session is out of step either way."""
    original = protocol.data_received

    def data_received(data: bytes) -> None:
        try:
            original(data)
        except Exception as error:  # noqa: BLE001 - any of them leaves the session unusable
            _fail_commands(protocol, aioimaplib.Abort(clean(str(error).splitlines()[0] if str(error) else repr(error))))
            if protocol.transport is not None:
                protocol.transport.close()

    protocol.data_received = data_received


class _CredentialCommand(aioimaplib.Command):
    """LOGIN or AUTHENTICATE: its arguments are never kept, so no error or log line that
    prints the command can show them."""

    def __repr__(self) -> str:
        return f"{self.tag} {self.name} [credentials redacted]"

    __str__ = __repr__


async def send_credentials(protocol: aioimaplib.IMAP4ClientProtocol, name: str, arguments: str) -> aioimaplib.Response:
    """Run LOGIN or AUTHENTICATE with `arguments` written to the socket and nowhere else,
    under the state lock as aioimaplib's own login does."""
    if protocol.state != aioimaplib.NONAUTH:
        raise aioimaplib.Abort(f"command {name} illegal in state {protocol.state}")
    command = _CredentialCommand(name, protocol.new_tag(), loop=protocol.loop)
    async with protocol.state_condition:
        if protocol.pending_sync_command is not None:
            await protocol.pending_sync_command.wait()
        if protocol.pending_async_commands:
            await protocol.wait_async_pending_commands()
        protocol.pending_sync_command = command
        _LIBRARY_LOGGER.debug("Sending : %s", command)
        protocol.transport.write(f"{command.tag} {name} {arguments}\r\n".encode())
        try:
            await command.wait()
        finally:
            if protocol.pending_sync_command is command:
                protocol.pending_sync_command = None
        if command.response.result == "OK":
            protocol.state = aioimaplib.AUTH
        protocol.state_condition.notify_all()
    return command.response


async def login(protocol: aioimaplib.IMAP4ClientProtocol, username: str, password: str) -> aioimaplib.Response:
    """LOGIN with both arguments quoted (RFC 3501 section 9)."""
    return await send_credentials(protocol, "LOGIN", f"{imap_quoted(username)} {imap_quoted(password)}")


async def xoauth2(protocol: aioimaplib.IMAP4ClientProtocol, username: str, token: str) -> aioimaplib.Response:
    """AUTHENTICATE XOAUTH2 with the initial response inline (SASL-IR), as Gmail and
    Microsoft 365 expect."""
    payload = base64.b64encode(xoauth2_payload(username, token).encode("utf-8")).decode("ascii")
    return await send_credentials(protocol, "AUTHENTICATE", f"XOAUTH2 {payload}")


async def starttls(client: aioimaplib.IMAP4, host: str, describe: str, context) -> None:  # noqa: ANN001
    """aioimaplib knows the STARTTLS command but has no method: upgrade the transport here."""
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise AccountError(f"{describe} does not offer STARTTLS: use --security ssl")
    response = await protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop))
    if response.result != "OK":
        raise AccountError(f"STARTTLS refused by {describe}: {first_line(response)}")
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(protocol.transport, protocol, context, server_hostname=host)
    await protocol.capability()  # capabilities may change once secure (RFC 3501 6.2.1)
