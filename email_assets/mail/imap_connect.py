"""Opening an IMAP session: TLS, authentication, and retries on the failures worth retrying.

TLS certificates are verified unless the account says `plain`. Refused or reset
connections and "too many connections" answers are retried with exponential backoff and
full jitter; a bad password, an untrusted certificate or a timeout is reported at once,
in one line that never holds the secret.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from dataclasses import dataclass

import aioimaplib

from email_assets.errors import AccountError
from email_assets.mail.aioimaplib_fixes import answer_sasl_error_challenges, fail_pending_commands, first_line, starttls
from email_assets.mail.imap_session import ImapSession

SECURITY_MODES = ("ssl", "starttls", "plain")
DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "plain": 143}


@dataclass(frozen=True)
class ImapEndpoint:
    host: str
    port: int
    security: str = "ssl"
    ca_file: str | None = None
    timeout: float = 30.0  # per command: a silent server fails the call, not the tick

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def describe(self) -> str:
        return f"{self.host}:{self.port}"


class _RetryableError(Exception):
    """A failure worth another try after a pause: refused/reset connection, connection limit."""


def without_secret(text: str, secret: str) -> str:
    """Library errors can quote the command they were running (aioimaplib's Abort shows a
    pending LOGIN with its arguments): no such text leaves this module with the secret."""
    return text.replace(secret, "***") if secret else text


def is_connection_limit(text: str) -> bool:
    """Providers say "too many connections" in several ways (RFC 5530 [LIMIT], Gmail, Dovecot)."""
    lowered = text.lower()
    return "[limit]" in lowered or "too many" in lowered or "maximum number of connections" in lowered


class connect:  # noqa: N801 - used as `async with connect(...)`, like a function
    """Open, secure and authenticate a session; always log out on exit (`attempts` in all)."""

    def __init__(
        self,
        endpoint: ImapEndpoint,
        username: str,
        secret: str,
        mechanism: str = "login",
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        """`secret` is the password for `login`, a bearer token for `xoauth2`."""
        self._endpoint = endpoint
        self._username = username
        self._secret = secret
        self._mechanism = mechanism
        self._attempts = attempts
        self._backoff = backoff
        self._session: ImapSession | None = None

    async def __aenter__(self) -> ImapSession:
        if self._endpoint.security not in SECURITY_MODES:
            raise AccountError(f"unknown security mode {self._endpoint.security!r}: use ssl, starttls or plain")
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._open()
            except _RetryableError as error:
                if attempt == self._attempts:
                    raise AccountError(
                        f"cannot connect to {self._endpoint.describe()} after {attempt} attempts: {error}"
                    ) from None
                await asyncio.sleep(random.uniform(0, self._backoff * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    async def _open(self) -> ImapSession:
        endpoint = self._endpoint
        try:
            if endpoint.security == "ssl":
                client = aioimaplib.IMAP4_SSL(
                    endpoint.host, endpoint.port, timeout=endpoint.timeout, ssl_context=endpoint.ssl_context()
                )
            else:
                client = aioimaplib.IMAP4(endpoint.host, endpoint.port, timeout=endpoint.timeout)
            client.protocol.conn_lost_cb = fail_pending_commands(client.protocol)
            session = ImapSession(client, endpoint.describe(), endpoint.timeout)
            self._session = session
            await client.wait_hello_from_server()
            if endpoint.security == "starttls":
                await starttls(client, endpoint.host, endpoint.describe(), endpoint.ssl_context())
            if self._mechanism == "xoauth2":
                answer_sasl_error_challenges(client.protocol)
                response = await client.xoauth2(self._username, self._secret)
            else:
                response = await client.login(self._username, self._secret)
            if response.result == "OK":  # capabilities may change once authenticated (RFC 3501 6.2.3)
                await client.protocol.capability()
        except ssl.SSLCertVerificationError as error:
            await self._close()
            raise AccountError(
                f"TLS certificate of {endpoint.describe()} is not trusted ({error.verify_message}): "
                "fix the server certificate or pass --ca-file"
            ) from None
        except (ConnectionRefusedError, ConnectionResetError) as error:
            await self._close()
            raise _RetryableError(error.strerror or type(error).__name__) from None
        except (TimeoutError, OSError, aioimaplib.AioImapException) as error:
            await self._close()
            reason = type(error).__name__ if isinstance(error, TimeoutError) else str(error) or type(error).__name__
            raise AccountError(
                f"cannot connect to {endpoint.describe()}: {without_secret(reason, self._secret)}"
            ) from None
        if response.result != "OK":
            await self._close()
            answer = first_line(response)
            if is_connection_limit(answer):
                raise _RetryableError(answer)
            raise AccountError(f"login as {self._username} on {endpoint.describe()} was refused: {answer}")
        return session

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.logout()
            self._session = None

    async def __aexit__(self, *exc: object) -> None:
        await self._close()
