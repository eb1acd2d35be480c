"""Opening an IMAP session: TLS, authentication, and retries on the failures worth retrying.

TLS certificates are verified unless the account says `plain`. Refused or reset
connections and "too many connections" answers are retried with exponential backoff and
full jitter; a bad password, an untrusted certificate or a timeout is reported at once,
in one line that never holds the secret in any of the forms it takes on the wire
(`aioimaplib_fixes.secret_forms`), nor do aioimaplib's and asyncio's log lines meanwhile.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
from dataclasses import dataclass

import aioimaplib

from email_assets.errors import AccountError
from email_assets.mail.aioimaplib_fixes import (
    answer_sasl_error_challenges,
    contain_protocol_errors,
    fail_pending_commands,
    first_line,
    hide_in_logs,
    login,
    scrub,
    secret_forms,
    show_in_logs,
    starttls,
    xoauth2,
)
from email_assets.mail.imap_session import ImapSession
from email_assets.mail.imap_wire import DEFAULT_LIMITS, WireLimits

SECURITY_MODES = ("ssl", "starttls", "plain")
# What OpenSSL says when the port answers in clear text: the server wants STARTTLS (or plain).
_NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
_UNSENDABLE = re.compile(r"[\x00\r\n]")
DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "plain": 143}


@dataclass(frozen=True)
class ImapEndpoint:
    host: str
    port: int
    security: str = "ssl"
    ca_certificate: str | None = None  # PEM text, not a path: runs on other hosts have no such file
    timeout: float = 30.0  # per command: a silent server fails the call, not the tick
    limits: WireLimits = DEFAULT_LIMITS  # how much this server may make us hold

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_certificate)

    def describe(self) -> str:
        return f"{self.host}:{self.port}"


class _RetryableError(Exception):
    """A failure worth another try after a pause: refused/reset connection, connection limit."""


def without_secret(text: str, secret: str, username: str = "") -> str:
    """Library errors can quote the command they were running: no such text leaves this
    module with the secret, raw, IMAP-quoted, as Python prints it, or in base64."""
    return scrub(text, secret_forms(secret, username))


def _not_tls(error: BaseException) -> bool:
    return isinstance(error, ssl.SSLError) and getattr(error, "reason", None) in _NOT_TLS_REASONS


def _check_sendable(username: str, secret: str) -> None:
    """NUL, CR and LF would end the command line on the wire (RFC 3501 section 9)."""
    for what, text in (("username", username), ("password or token", secret)):
        if _UNSENDABLE.search(text):
            raise AccountError(f"the {what} holds a line break or NUL, which IMAP cannot send: check how it was given")


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
        self._forms = secret_forms(secret, username)
        self._log_key: int | None = None

    async def __aenter__(self) -> ImapSession:
        if self._endpoint.security not in SECURITY_MODES:
            raise AccountError(f"unknown security mode {self._endpoint.security!r}: use ssl, starttls or plain")
        _check_sendable(self._username, self._secret)
        self._log_key = hide_in_logs(self._forms)
        try:
            return await self._open_with_retries()
        except BaseException:
            self._show_logs()
            raise

    async def _open_with_retries(self) -> ImapSession:
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
            contain_protocol_errors(client.protocol, self._clean)
            session = ImapSession(client, endpoint.describe(), endpoint.timeout, limits=endpoint.limits)
            self._session = session
            await client.wait_hello_from_server()
            if endpoint.security == "starttls":
                await starttls(client, endpoint.host, endpoint.describe(), endpoint.ssl_context())
            response = await asyncio.wait_for(self._authenticate(client.protocol), endpoint.timeout)
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
            if endpoint.security == "ssl" and _not_tls(error):
                raise AccountError(
                    f"{endpoint.describe()} does not speak TLS on connect ({error.reason}): "
                    "use --security starttls (or plain) for this port, or the server's TLS port (993)"
                ) from None
            reason = type(error).__name__ if isinstance(error, TimeoutError) else str(error) or type(error).__name__
            raise AccountError(f"cannot connect to {endpoint.describe()}: {self._clean(reason)}") from None
        if response.result != "OK":
            await self._close()
            answer = self._clean(first_line(response))
            if is_connection_limit(answer):
                raise _RetryableError(answer)
            raise AccountError(f"login as {self._username} on {endpoint.describe()} was refused: {answer}")
        return session

    async def _authenticate(self, protocol: aioimaplib.IMAP4ClientProtocol) -> aioimaplib.Response:
        if self._mechanism == "xoauth2":
            answer_sasl_error_challenges(protocol)
            return await xoauth2(protocol, self._username, self._secret)
        return await login(protocol, self._username, self._secret)

    def _clean(self, text: str) -> str:
        return scrub(text, self._forms)

    def _show_logs(self) -> None:
        if self._log_key is not None:
            show_in_logs(self._log_key)
            self._log_key = None

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.logout()
            self._session = None

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._close()
        finally:
            self._show_logs()
