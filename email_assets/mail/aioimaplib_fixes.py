"""Where aioimaplib falls short for a sync that must not hang or leak: each fix in one place.

aioimaplib does the connection, greeting, LOGIN/AUTHENTICATE and LOGOUT; these functions
patch what it gets wrong there. Commands whose answers are data do not go through it at
all (see `command_reader`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

import aioimaplib

from email_assets.errors import AccountError


class _RedactCredentials(logging.Filter):
    """aioimaplib logs every line it sends at DEBUG; it masks a LOGIN password but not an
    XOAUTH2 token, which travels base64-encoded. Whoever turns DEBUG on (Dagster's
    `python_logs`, a developer) must still never see a credential."""

    _CREDENTIAL_LINE = re.compile(r"(AUTHENTICATE|LOGIN)\b.*", re.IGNORECASE | re.DOTALL)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Sending" in message and self._CREDENTIAL_LINE.search(message):
            record.msg = self._CREDENTIAL_LINE.sub(r"\1 [credentials redacted]", message)
            record.args = ()
        return True


logging.getLogger(aioimaplib.__name__ + ".aioimaplib").addFilter(_RedactCredentials())


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


def fail_pending_commands(protocol: aioimaplib.IMAP4ClientProtocol) -> Callable[[Exception | None], None]:
    """aioimaplib leaves commands waiting for their timeout when the server goes away;
    fail them at once, the way its own timeout callback does, so a dropped connection is
    reported in milliseconds rather than after `timeout` seconds."""

    def on_connection_lost(error: Exception | None) -> None:
        reason = aioimaplib.Abort(f"connection lost ({error or 'closed by server'})")
        commands = [*protocol.pending_async_commands.values(), protocol.pending_sync_command]
        for command in commands:
            if command is not None and not command._event.is_set():
                command._exception = reason
                command.close(b"connection lost", "NO")

    return on_connection_lost


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
