"""IMAP client use, on aioimaplib: connect, authenticate, look at folders, fetch in batches.

Only the questions the sync needs are asked, each batched: one SEARCH per folder and day
window, one FETCH of INTERNALDATEs for the UIDs we do not know yet, then bodies in
`UID FETCH` batches. TLS certificates are verified unless the account says `plain`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aioimaplib

from email_assets.errors import AccountError
from email_assets.mail.fetch_stream import stream_fetch
from email_assets.mail.mailbox_names import decode_mailbox_name, encode_mailbox_name

SECURITY_MODES = ("ssl", "starttls", "plain")
DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "plain": 143}
FETCH_BATCH_SIZE = 500  # messages per store transaction
UIDS_PER_FETCH_COMMAND = 5000  # keeps the command line well under servers' 8-64 KB limits
EXCLUDED_SPECIAL_USE = {"\\Junk", "\\Trash"}

_FETCH_ITEM = re.compile(
    rb"\b(UID|RFC822\.SIZE|X-GM-MSGID|X-GM-THRID) (\d+)"
    rb'|\bINTERNALDATE "([^"]+)"'
    rb"|\bFLAGS \(([^)]*)\)"
    rb"|\b(EMAILID|THREADID) \(([A-Za-z0-9_-]+)\)"  # RFC 8474; THREADID NIL means none
)
_NUMBER_ITEMS = {b"UID": "uid", b"RFC822.SIZE": "size"}
_ID_ITEMS = {b"X-GM-MSGID": "server_id", b"X-GM-THRID": "thread_id", b"EMAILID": "server_id", b"THREADID": "thread_id"}
_STATUS_ITEM = re.compile(rb"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)")
_LIST_LINE = re.compile(rb'^\(([^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (.+)$')


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


@dataclass(frozen=True)
class ImapEndpoint:
    host: str
    port: int
    security: str = "ssl"
    ca_file: str | None = None
    timeout: float = 30.0

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def describe(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class FolderStatus:
    folder: str
    uidvalidity: int
    uidnext: int
    messages: int


@dataclass(frozen=True)
class ServerIds:
    """A server's own message and thread ids, where it offers them.

    A server id names the message, not its copy: Gmail gives one X-GM-MSGID to a message
    under all its labels, and an RFC 8474 EMAILID stays with a message through COPY and
    MOVE. Both outlive a UIDVALIDITY change. So a message already stored under its id is
    linked to a new folder or UID without downloading its body again.
    """

    capability: str
    message_item: str
    thread_item: str


GMAIL_IDS = ServerIds("X-GM-EXT-1", "X-GM-MSGID", "X-GM-THRID")
OBJECT_IDS = ServerIds("OBJECTID", "EMAILID", "THREADID")


@dataclass(frozen=True)
class MessageDate:
    uid: int
    internaldate: dt.datetime
    size: int
    flags: tuple[str, ...] = ()
    server_id: str | None = None
    thread_id: str | None = None


@dataclass(frozen=True)
class FetchedMessage:
    folder: str
    uidvalidity: int
    uid: int
    internaldate: dt.datetime
    flags: tuple[str, ...]
    size: int
    raw: bytes
    server_id: str | None = None
    thread_id: str | None = None


MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS = {name.encode(): number for number, name in enumerate(MONTH_NAMES, 1)}


def parse_internaldate(value: bytes | str) -> dt.datetime:
    """IMAP date-time ("20-Nov-2026 10:00:00 +0000") as an aware UTC datetime.

    Hand-parsed: strptime costs ~6 us and runs twice per message in a sync.
    """
    text = value.encode("ascii") if isinstance(value, str) else value
    date_part, time_part, zone = text.strip().split(b" ")
    day, month, year = date_part.split(b"-")
    hour, minute, second = time_part.split(b":")
    offset = int(zone[1:3]) * 60 + int(zone[3:5])
    tz = dt.timezone(dt.timedelta(minutes=-offset if zone[:1] == b"-" else offset))
    moment = dt.datetime(
        int(year), _MONTHS[month.capitalize()], int(day), int(hour), int(minute), int(second), tzinfo=tz
    )
    return moment.astimezone(dt.UTC)


def imap_date(day: dt.date) -> str:
    """SEARCH date format; month names are fixed English, never locale-dependent."""
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return f"{day.day}-{months[day.month - 1]}-{day.year}"


def uid_set(uids: Iterable[int]) -> str:
    """Compact sequence set: 1,2,3,7,8 -> 1:3,7:8 (keeps long FETCH lines short)."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    ranges: list[str] = []
    start = previous = ordered[0]
    for uid in ordered[1:]:
        if uid == previous + 1:
            previous = uid
            continue
        ranges.append(f"{start}:{previous}" if start != previous else str(start))
        start = previous = uid
    ranges.append(f"{start}:{previous}" if start != previous else str(start))
    return ",".join(ranges)


def parse_fetch_response(text: bytes, body: bytes | None = None) -> dict[str, Any] | None:
    """The items of one FETCH response (its text, literal left out), in one regex pass.

    None for a response without a UID: an unsolicited FLAGS update, not an answer.
    """
    items: dict[str, Any] = {"body": body}
    for match in _FETCH_ITEM.finditer(text):
        name, number, date, flags, id_name, object_id = match.groups()
        if number is not None:
            if name in _ID_ITEMS:
                items[_ID_ITEMS[name]] = number.decode("ascii")
            else:
                items[_NUMBER_ITEMS[name]] = int(number)
        elif object_id is not None:
            items[_ID_ITEMS[id_name]] = object_id.decode("ascii")
        elif date is not None:
            items["internaldate"] = parse_internaldate(date)
        elif flags is not None:
            items["flags"] = tuple(flags.decode("ascii", "replace").split())
    return items if "uid" in items else None


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _first_line(response: aioimaplib.Response) -> str:
    for line in reversed(response.lines):
        if isinstance(line, bytes) and line:
            return line.decode("utf-8", "replace")
    return response.result


class ImapSession:
    """One authenticated IMAP connection. Use `async with connect(...) as session`."""

    def __init__(self, client: aioimaplib.IMAP4, endpoint: ImapEndpoint) -> None:
        self._client = client
        self._endpoint = endpoint
        self.selected: str | None = None

    @property
    def capabilities(self) -> set[str]:
        return set(self._client.protocol.capabilities)

    @property
    def server_ids(self) -> ServerIds | None:
        """Gmail's ids where offered (Gmail has no OBJECTID), else RFC 8474's, else none."""
        capabilities = {name.upper() for name in self.capabilities}
        return next((ids for ids in (GMAIL_IDS, OBJECT_IDS) if ids.capability in capabilities), None)

    def _id_items(self) -> str:
        ids = self.server_ids
        return f" {ids.message_item} {ids.thread_item}" if ids else ""

    async def _check(self, response: aioimaplib.Response, what: str) -> aioimaplib.Response:
        if response.result != "OK":
            raise AccountError(f"{what} failed on {self._endpoint.describe()}: {_first_line(response)}")
        return response

    async def list_folders(self) -> list[tuple[str, set[str]]]:
        """(decoded name, attribute flags) of every selectable folder."""
        response = await self._check(await self._client.list('""', '"*"'), "LIST")
        folders = []
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            match = _LIST_LINE.match(line)
            if not match:
                continue
            attributes = set(match.group(1).decode("ascii", "replace").split())
            if "\\Noselect" in attributes or "\\NonExistent" in attributes:
                continue
            wire_name = match.group(2).decode("utf-8", "replace")
            if wire_name.startswith('"') and wire_name.endswith('"'):
                wire_name = wire_name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            folders.append((decode_mailbox_name(wire_name), attributes))
        return folders

    async def default_folders(self) -> list[str]:
        """Every selectable folder except the SPECIAL-USE Junk and Trash ones."""
        folders = await self.list_folders()
        return [name for name, attributes in folders if not attributes & EXCLUDED_SPECIAL_USE]

    async def status(self, folder: str) -> FolderStatus:
        response = await self._check(
            await self._client.status(_quoted(encode_mailbox_name(folder)), "(UIDVALIDITY UIDNEXT MESSAGES)"),
            f"STATUS {folder}",
        )
        items = {}
        for line in response.lines:
            if isinstance(line, bytes):
                items.update({k.decode(): int(v) for k, v in _STATUS_ITEM.findall(line)})
        return FolderStatus(folder, items["UIDVALIDITY"], items["UIDNEXT"], items.get("MESSAGES", 0))

    async def examine(self, folder: str) -> FolderStatus:
        """Select read-only: a sync must never change flags (\\Seen) or expunge."""
        response = await self._check(
            await self._client.examine(_quoted(encode_mailbox_name(folder))), f"EXAMINE {folder}"
        )
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))
        uidvalidity = re.search(rb"UIDVALIDITY (\d+)", text)
        uidnext = re.search(rb"UIDNEXT (\d+)", text)
        exists = re.search(rb"(\d+) EXISTS", text)
        if uidvalidity is None:
            raise AccountError(f"EXAMINE {folder} on {self._endpoint.describe()} gave no UIDVALIDITY")
        self.selected = folder
        self._client.protocol.state = aioimaplib.SELECTED  # aioimaplib tracks this only for SELECT
        return FolderStatus(
            folder,
            int(uidvalidity.group(1)),
            int(uidnext.group(1)) if uidnext else 0,
            int(exists.group(1)) if exists else 0,
        )

    async def _uid_search(self, criteria: str) -> list[int]:
        response = await self._check(await self._client.uid_search(criteria, charset=None), "SEARCH")
        uids: set[int] = set()
        for line in response.lines[:-1]:  # the last line is the tagged completion text
            if isinstance(line, bytes):
                uids.update(int(uid) for uid in line.split() if uid.isdigit())
        return sorted(uids)

    async def search_uids(self, since: dt.date, before: dt.date) -> list[int]:
        """UIDs whose INTERNALDATE falls in [since, before) in the *server's* time zone."""
        return await self._uid_search(f"SINCE {imap_date(since)} BEFORE {imap_date(before)}")

    async def search_uids_from(self, first_uid: int) -> list[int]:
        """UIDs >= first_uid. `N:*` always matches the highest UID, so filter it."""
        return [uid for uid in await self._uid_search(f"UID {first_uid}:*") if uid >= first_uid]

    async def message_dates(self, uids: Sequence[int], with_ids: bool = False) -> list[MessageDate]:
        """INTERNALDATE and size of the given UIDs, without bodies; `with_ids` adds the
        flags and the server's ids (see `ServerIds`), where it has them."""
        items = "UID INTERNALDATE RFC822.SIZE" + (" FLAGS" + self._id_items() if with_ids else "")
        dates: list[MessageDate] = []
        for start in range(0, len(uids), UIDS_PER_FETCH_COMMAND):
            command = f"UID FETCH {uid_set(uids[start : start + UIDS_PER_FETCH_COMMAND])} ({items})"
            async for completed in stream_fetch(self._client.protocol, command, self._endpoint.timeout):
                for text, _ in completed:
                    item = parse_fetch_response(text)
                    if item is not None and "internaldate" in item:
                        dates.append(
                            MessageDate(
                                item["uid"],
                                item["internaldate"],
                                item.get("size", 0),
                                item.get("flags", ()),
                                item.get("server_id"),
                                item.get("thread_id"),
                            )
                        )
        return dates

    async def fetch_messages(
        self, folder: str, uidvalidity: int, uids: Sequence[int], batch_size: int = FETCH_BATCH_SIZE
    ) -> AsyncIterator[list[FetchedMessage]]:
        """Bodies exactly as served (BODY.PEEK[] leaves \\Seen alone), `batch_size` at a time,
        streamed from few large FETCH commands (see `fetch_stream`)."""
        batch: list[FetchedMessage] = []
        for start in range(0, len(uids), UIDS_PER_FETCH_COMMAND):
            command = (
                f"UID FETCH {uid_set(uids[start : start + UIDS_PER_FETCH_COMMAND])} "
                f"(UID INTERNALDATE FLAGS RFC822.SIZE{self._id_items()} BODY.PEEK[])"
            )
            async for completed in stream_fetch(self._client.protocol, command, self._endpoint.timeout):
                for text, body in completed:
                    item = parse_fetch_response(text, body)
                    if item is None or body is None or "internaldate" not in item:
                        continue
                    batch.append(
                        FetchedMessage(
                            folder=folder,
                            uidvalidity=uidvalidity,
                            uid=item["uid"],
                            internaldate=item["internaldate"],
                            flags=item.get("flags", ()),
                            size=item.get("size", len(body)),
                            raw=body,
                            server_id=item.get("server_id"),
                            thread_id=item.get("thread_id"),
                        )
                    )
                while len(batch) >= batch_size:  # one socket read may complete many messages
                    yield batch[:batch_size]
                    batch = batch[batch_size:]
        if batch:
            yield batch

    async def logout(self) -> None:
        transport = self._client.protocol.transport
        if transport is None or transport.is_closing():
            return  # the connection is gone: a LOGOUT would only wait out its 5 s timeout
        try:
            await asyncio.wait_for(self._client.logout(), 5)
        except Exception:  # noqa: BLE001 - the connection is being dropped either way
            pass
        finally:
            transport = self._client.protocol.transport
            if transport is not None:
                transport.close()


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
    """Open, secure and authenticate a session; always log out on exit.

    Refused or reset connections and "too many connections" answers are retried with
    exponential backoff and full jitter (`attempts` in all); a bad password, an untrusted
    certificate or a timeout is reported at once, in one line.
    """

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
            client.protocol.conn_lost_cb = _fail_pending_commands(client.protocol)
            session = ImapSession(client, endpoint)
            self._session = session
            await client.wait_hello_from_server()
            if endpoint.security == "starttls":
                await _starttls(client, endpoint)
            if self._mechanism == "xoauth2":
                _answer_sasl_error_challenges(client.protocol)
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
            answer = _first_line(response)
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


def _answer_sasl_error_challenges(protocol: aioimaplib.IMAP4ClientProtocol) -> None:
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


def _fail_pending_commands(protocol: aioimaplib.IMAP4ClientProtocol) -> Callable[[Exception | None], None]:
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


async def _starttls(client: aioimaplib.IMAP4, endpoint: ImapEndpoint) -> None:
    """aioimaplib knows the STARTTLS command but has no method: upgrade the transport here."""
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise AccountError(f"{endpoint.describe()} does not offer STARTTLS: use --security ssl")
    response = await protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop))
    if response.result != "OK":
        raise AccountError(f"STARTTLS refused by {endpoint.describe()}: {_first_line(response)}")
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport, protocol, endpoint.ssl_context(), server_hostname=endpoint.host
    )
    await protocol.capability()  # capabilities may change once secure (RFC 3501 6.2.1)
