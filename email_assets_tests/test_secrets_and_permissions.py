"""Secrets on the wire and at rest, and what other local users can read (issue 20).

A tiny IMAP server here answers LOGIN and AUTHENTICATE as a test needs (a wrong tag, a
`+` continuation, a strict RFC 3501 parse of the arguments); every captured error, log
line and stderr is then searched for each form the password takes: raw, IMAP-quoted with
its escapes, as Python prints str and bytes, and in base64.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from email_assets_tests.conftest import PROJECT_ROOT, record_reliability, run_cli

PASSWORD = "hunter2\"quo\\te Xy9-'long"
USERNAME = 'me "x"\\y@example.com'


def password_forms(secret: str = PASSWORD, username: str = USERNAME) -> list[str]:
    """The spellings to look for, computed here independently of the code under test."""
    escaped = secret.replace("\\", "\\\\").replace('"', '\\"')
    forms = {secret, escaped, repr(secret)[1:-1], repr(escaped)[1:-1]}
    forms |= {repr(text.encode())[2:-1] for text in (secret, escaped)}
    for payload in (f"\0{username}\0{secret}", f"user={username}\1auth=Bearer {secret}\1\1"):
        forms.add(base64.b64encode(payload.encode()).decode())
    for offset in range(3):  # the middle of the secret's base64 at every alignment
        forms.add(base64.b64encode(bytes(offset) + secret.encode()).decode()[4:-4])
    forms.add(secret[:7])  # "hunter2": whatever escaping, the start survives
    return sorted(forms)


def assert_no_password(text: str, secret: str = PASSWORD, username: str = USERNAME) -> None:
    leaked = [form for form in password_forms(secret, username) if form in text]
    assert not leaked, f"password forms {leaked} in:\n{text}"


_ATOM_OR_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"|([^\s"(){%*\\\]]+)')


def imap_arguments(line: bytes) -> list[str]:
    """The arguments of a command line per RFC 3501 (atoms and quoted strings); anything
    else (a stray `"` or `\\` in an atom) is a syntax error, as a strict server says."""
    arguments, position = [], 0
    while position < len(line):
        if line[position : position + 1] == b" ":
            position += 1
            continue
        match = _ATOM_OR_QUOTED.match(line, position)
        if not match or (match.end() < len(line) and line[match.end() : match.end() + 1] != b" "):
            raise ValueError(f"syntax error at {position}: {line!r}")
        quoted, atom = match.groups()
        arguments.append(re.sub(rb"\\([\"\\])", rb"\1", quoted).decode() if quoted is not None else atom.decode())
        position = match.end()
    return arguments


@dataclass
class LoginServer:
    """Greets, answers CAPABILITY, LOGOUT and NOOP; LOGIN/AUTHENTICATE as `answer_login` says."""

    answer_login: Callable[[bytes, list[str]], bytes]
    lines: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def __enter__(self) -> LoginServer:
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
        self.connections += 1
        try:
            await self._converse(reader, writer)
        except (ConnectionError, ValueError):  # a TLS hello is no IMAP line
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2] ready.\r\n")
        while line := await reader.readline():
            self.lines.append(line)
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            verb, _, arguments = rest.partition(b" ")
            verb = verb.upper()
            if verb == b"CAPABILITY":
                writer.write(b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2\r\n" + tag + b" OK done\r\n")
            elif verb in (b"LOGIN", b"AUTHENTICATE"):
                try:
                    parsed = imap_arguments(arguments)
                except ValueError:
                    writer.write(tag + b" BAD Error in IMAP command received by server.\r\n")
                else:
                    writer.write(self.answer_login(tag, parsed))
            elif verb == b"LOGOUT":
                writer.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                await writer.drain()
                break
            else:
                writer.write(tag + b" OK done\r\n")
            await writer.drain()
        writer.close()


def wrong_tag(tag: bytes, _arguments: list[str]) -> bytes:
    """A `+` continuation (aioimaplib logs the pending command at DEBUG), then a tag the
    client never sent (aioimaplib raises with the command line)."""
    return b"+ go on\r\n" + (b"X" + tag) + b" OK Logged in\r\n"


CLIENT = """
import asyncio, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from email_assets.mail.imap_connect import ImapEndpoint, connect
from email_assets.errors import UserError

async def main():
    endpoint = ImapEndpoint("127.0.0.1", int(sys.argv[1]), sys.argv[2], None, 5)
    try:
        async with connect(endpoint, sys.argv[3], sys.argv[4], sys.argv[5], attempts=1):
            print("logged in")
    except UserError as error:
        print("error:", error)

asyncio.run(main())
"""


def run_client(port: int, mechanism: str, security: str = "plain", username: str = "me@example.com") -> str:
    """A fresh process at DEBUG logging: what it printed, then all it wrote on stderr."""
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, str(port), security, username, PASSWORD, mechanism],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )
    return result.stdout + "\n--- stderr ---\n" + result.stderr


def _record_login_case(case: str, output: str) -> None:
    """The case's figures for `make reliability`, before the assertions."""
    leaked = sum(form in output for form in password_forms(PASSWORD, "me@example.com"))
    record_reliability(f"hostile server: {case}", 1, None, None, leaked, int("Traceback" in output))


@pytest.mark.parametrize("mechanism", ["login", "xoauth2"])
def test_an_unexpected_login_answer_never_shows_the_password(mechanism) -> None:
    with LoginServer(wrong_tag) as server:
        output = run_client(server.port, mechanism)
    _record_login_case(f"LOGIN answered under another tag ({mechanism})", output)
    assert "error:" in output and "Traceback" not in output, output
    assert output.split("\n--- stderr ---")[0].count("\n") == 1  # one line
    assert "Sending" in output and "[credentials redacted]" in output  # DEBUG was on
    assert_no_password(output, username="me@example.com")


def echoes_the_arguments(tag: bytes, arguments: list[str]) -> bytes:
    """A server that quotes what it got back, raw and as sent, in its refusal."""
    quoted = " ".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in arguments)
    return f"{tag.decode()} NO [ALERT] got {quoted} that is {arguments!r}\r\n".encode()


@pytest.mark.parametrize("mechanism", ["login", "xoauth2"])
def test_a_server_echoing_the_password_is_scrubbed_from_errors_and_logs(mechanism) -> None:
    with LoginServer(echoes_the_arguments) as server:
        output = run_client(server.port, mechanism)
    _record_login_case(f"refusal echoing the credentials ({mechanism})", output)
    assert "error: login as me@example.com" in output and "was refused" in output, output
    assert "Received" in output  # aioimaplib logged the answer at DEBUG
    assert_no_password(output, username="me@example.com")


def accepts_only(username: str, password: str) -> Callable[[bytes, list[str]], bytes]:
    """A server that parses LOGIN strictly and says OK only to these credentials."""

    def answer(tag: bytes, arguments: list[str]) -> bytes:
        if arguments == [username, password]:
            return tag + b" OK Logged in\r\n"
        return tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"

    return answer


def connect_once(port: int, username: str, password: str, security: str = "plain") -> str:
    """Log in and out; "ok" or the one-line error."""
    from email_assets.errors import UserError
    from email_assets.mail.imap_connect import ImapEndpoint, connect

    async def run() -> str:
        async with connect(ImapEndpoint("127.0.0.1", port, security, None, 5), username, password, attempts=1):
            return "ok"

    try:
        return asyncio.run(run())
    except UserError as error:
        return str(error)


def test_usernames_with_a_space_quote_or_backslash_log_in() -> None:
    with LoginServer(accepts_only(USERNAME, PASSWORD)) as server:
        assert connect_once(server.port, USERNAME, PASSWORD) == "ok"
        assert connect_once(server.port, USERNAME, "wrong").startswith(f"login as {USERNAME} on 127.0.0.1")


def test_a_password_with_quotes_and_backslashes_logs_in_on_dovecot(dovecot) -> None:
    from email_assets.errors import UserError

    password = 'pw "with" \\back\\slash'
    dovecot.add_user("quotes1", password)
    assert "INBOX" in asyncio.run(_folders(dovecot, "quotes1", password))
    with pytest.raises(UserError, match="was refused"):
        asyncio.run(_folders(dovecot, "quotes1", password + "x"))


async def _folders(dovecot, username: str, password: str) -> list[str]:
    from email_assets.mail.imap_connect import ImapEndpoint, connect

    endpoint = ImapEndpoint(dovecot.host, dovecot.imaps_port, "ssl", dovecot.ca_file.read_text(), 10)
    async with connect(endpoint, username, password, attempts=1) as session:
        return await session.default_folders()


def test_tls_on_a_clear_text_port_suggests_starttls() -> None:
    with LoginServer(accepts_only(USERNAME, PASSWORD)) as server:
        error = connect_once(server.port, USERNAME, PASSWORD, security="ssl")
    assert "--security starttls" in error and "\n" not in error, error


def test_a_line_break_in_a_credential_is_a_one_line_error() -> None:
    with LoginServer(accepts_only(USERNAME, PASSWORD)) as server:
        error = connect_once(server.port, USERNAME, "two\r\nA1 LOGOUT")
        assert "line break or NUL" in error and "LOGOUT" not in error
        assert server.lines == []  # nothing was sent


def test_a_failed_poll_records_no_password_in_health_or_listings(project_env, capsys) -> None:
    """The text the sensor stores as `last_error` and `accounts list`/`status` print."""
    from email_assets import settings
    from email_assets.credentials import SecretBox
    from email_assets.polling import poll_accounts
    from email_assets.storage.accounts import Account, AccountStore
    from email_assets.storage.connection_slots import ConnectionSlots
    from email_assets.storage.messages import MessageStore

    url = settings.database_url()
    store = AccountStore(url)
    with LoginServer(wrong_tag) as server:
        account = Account(
            "work",
            "127.0.0.1",
            server.port,
            "me@example.com",
            "plain",
            ["INBOX"],
            1,
            None,
            SecretBox.from_environment().encrypt(PASSWORD),
        )
        store.add(account)
        result = poll_accounts(
            store.list(), {}, {}, lambda _account: PASSWORD, MessageStore(url), ConnectionSlots(url), 30
        )
    assert "work" in result.failed, result
    store.record_failure("work", result.failed["work"])
    assert run_cli(["accounts", "list", "--json"]) == 0
    assert run_cli(["status"]) == 0
    shown = json.dumps(result.failed) + capsys.readouterr().out
    assert "unexpected tagged response" in shown
    assert_no_password(shown, username="me@example.com")


# --- what other local users can read -----------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which everything created is readable by all, unless made private."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes_under(root: Path) -> dict[str, int]:
    found = {str(root): stat.S_IMODE(root.stat().st_mode)}
    for directory, directories, files in os.walk(root):
        for name in (*directories, *files):
            path = Path(directory, name)
            found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_the_data_dir_and_every_store_file_are_private(project_env, umask_022) -> None:
    from email_assets import settings
    from email_assets.mail.records import FetchedMessage
    from email_assets.storage.messages import MessageStore
    from email_assets.storage.vectors import VectorStore

    data = project_env / "data"
    assert not data.exists()
    store = MessageStore(settings.database_url())
    when = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
    store.save_fetched("work", [FetchedMessage("INBOX", 1, 1, when, (), 20, b"Subject: x\r\n\r\nprivate\r\n")], None)
    vectors = VectorStore(settings.chroma_location(), "test-model")
    with vectors.exclusive_writer():
        vectors.upsert(["c1", "c2"], [[1.0, 0.0], [0.0, 1.0]], ["private", "mail"], [{"a": 1}, {"a": 2}])
    with store.engine.connect():  # an open connection: the -wal and -shm files exist now
        modes = modes_under(data)
    assert {"email_assets.sqlite-wal", "email_assets.sqlite-shm", "chroma/chroma.sqlite3"} <= set(modes), modes
    assert any(name.endswith(".pack") for name in modes) and any(name.endswith(".bin") for name in modes), modes
    exposed = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert not exposed, f"readable by other users: {exposed}"
    assert modes[str(data)] == 0o700 and modes["chroma"] == 0o700 and modes["email_assets.sqlite"] == 0o600


def test_a_store_made_readable_by_an_earlier_release_is_made_private(project_env, umask_022) -> None:
    import sqlite3

    from email_assets import settings
    from email_assets.storage.database import engine_for

    data = project_env / "data"
    data.mkdir(mode=0o755)
    database = data / "email_assets.sqlite"
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE t (x)")
    connection.commit()  # keeps the -wal and -shm (0644, like the database) while open
    assert stat.S_IMODE(database.stat().st_mode) == 0o644
    try:
        engine_for(settings.database_url())
        modes = modes_under(data)
    finally:
        connection.close()
    assert modes[str(data)] == 0o700
    assert {name: mode for name, mode in modes.items() if name.startswith("email_assets.sqlite")} == {
        "email_assets.sqlite": 0o600,
        "email_assets.sqlite-wal": 0o600,
        "email_assets.sqlite-shm": 0o600,
    }


# --- store settings that cannot work: one line naming the variable -----------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EMAIL_ASSETS_DATABASE_URL", "postgresql+psycopg://u:p@h:notaport/db", "EMAIL_ASSETS_DATABASE_URL"),
        ("EMAIL_ASSETS_DATABASE_URL", "mysql://h/db", "EMAIL_ASSETS_DATABASE_URL"),
        ("EMAIL_ASSETS_DATABASE_URL", "sqlite:////no/such/dir/x.sqlite", "EMAIL_ASSETS_DATABASE_URL"),
        ("EMAIL_ASSETS_DATA_DIR", "{tmp}/a-file", "EMAIL_ASSETS_DATA_DIR"),
        ("EMAIL_ASSETS_DATA_DIR", "{tmp}/a-file/below", "EMAIL_ASSETS_DATA_DIR"),
    ],
)
def test_a_store_that_cannot_be_opened_is_one_line_naming_the_variable(
    project_env, monkeypatch, capsys, variable, value, expected
) -> None:
    (project_env / "a-file").write_text("not a directory")
    monkeypatch.setenv(variable, value.format(tmp=project_env))
    assert run_cli(["accounts", "list"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and expected in error and "Traceback" not in error, error
    assert "p@h" not in error  # a URL's password is not repeated


def test_a_chroma_location_that_is_a_file_is_one_line(project_env, monkeypatch) -> None:
    from email_assets.errors import ConfigurationError
    from email_assets.storage.vectors import VectorStore

    (project_env / "a-file").write_text("not a directory")
    vectors = VectorStore(str(project_env / "a-file"), "test-model")
    with pytest.raises(ConfigurationError, match="EMAIL_ASSETS_CHROMA"):
        vectors.upsert(["c1"], [[1.0]], ["x"], [{"a": 1}])


# --- account rows are not trusted: secrets sealed to their endpoint ----------------------


def add_without_login(name: str, port: int, *login: str, stdin: str = "") -> None:
    arguments = ["accounts", "add", name, "--host", "127.0.0.1", "--port", str(port), "--username", "me@example.com"]
    assert run_cli([*arguments, "--security", "plain", "--no-verify", *login], stdin=stdin) == 0


def stored_row(name: str) -> dict:
    from email_assets import settings
    from email_assets.storage.database import engine_for
    from email_assets.storage.tables import accounts

    with engine_for(settings.database_url()).connect() as connection:
        return dict(connection.execute(sa.select(accounts).where(accounts.c.name == name)).mappings().one())


def rewrite_row(name: str, **values: object) -> None:
    """What anyone who can write the accounts table can do, without any key."""
    from email_assets import settings
    from email_assets.storage.database import engine_for
    from email_assets.storage.tables import accounts

    with engine_for(settings.database_url()).begin() as connection:
        connection.execute(sa.update(accounts).where(accounts.c.name == name).values(**values))


def secret_of(name: str) -> str:
    from email_assets import settings
    from email_assets.account_access import login_secret
    from email_assets.credentials import SecretBox
    from email_assets.storage.accounts import AccountStore

    return login_secret(AccountStore(settings.database_url()).get(name), SecretBox.from_environment())


@pytest.mark.parametrize(
    "change",
    [
        {"host": "127.0.0.2"},
        {"port": 1},
        {"security": "ssl"},
        {"username": "attacker@example.com"},
        {"ca_certificate": "-----BEGIN CERTIFICATE-----\nthe attacker's CA\n-----END CERTIFICATE-----\n"},
        {"mechanism": "xoauth2"},
    ],
)
def test_a_password_is_not_released_for_another_endpoint(project_env, capsys, change) -> None:
    from email_assets.errors import AccountError

    with LoginServer(accepts_only("me@example.com", PASSWORD)) as server:
        add_without_login("work", server.port, "--password-stdin", stdin=PASSWORD + "\n")
        assert secret_of("work") == PASSWORD
        assert run_cli(["accounts", "test", "work"]) == 0 and server.connections == 1
        rewrite_row("work", **change)
        with pytest.raises(AccountError, match="account 'work': the accounts table says .* refusing to send it"):
            secret_of("work")
        capsys.readouterr()
        assert run_cli(["accounts", "test", "work"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "'work'" in error and "add it again" in error, error
        assert_no_password(error, username="me@example.com")
        assert server.connections == 1  # nothing was sent anywhere


def test_the_token_command_is_sealed_and_the_column_is_not_run(project_env, tmp_path) -> None:
    planted = tmp_path / "planted"
    add_without_login("cloud", 143, "--oauth2-token-command", "echo sealed-token")
    row = stored_row("cloud")
    assert row["token_source"] is None and b"echo" not in row["encrypted_secret"]
    assert secret_of("cloud") == "sealed-token"
    rewrite_row("cloud", token_source=f"command:touch {planted}")
    assert secret_of("cloud") == "sealed-token" and not planted.exists()


def test_rows_from_before_sealing_are_refused_until_the_operator_seals_them(
    project_env, tmp_path, monkeypatch, capsys
) -> None:
    """Rows as the previous release wrote them: a bare encrypted password, a plaintext token
    command. They cannot be told from rewritten ones, so none is used; `keys rotate` still
    goes through them."""
    from email_assets import settings
    from email_assets.credentials import SecretBox, generate_key
    from email_assets.errors import AccountError
    from email_assets.storage.database import engine_for
    from email_assets.storage.tables import accounts

    planted = tmp_path / "planted"
    box = SecretBox.from_environment()
    base = {
        "host": "127.0.0.1",
        "port": 143,
        "username": "me",
        "security": "plain",
        "folders": [],
        "max_connections": 1,
        "ca_file": None,
        "ca_certificate": None,
        "created_at": dt.datetime.now(dt.UTC),
        "consecutive_failures": 0,
    }
    with engine_for(settings.database_url()).begin() as connection:
        connection.execute(
            sa.insert(accounts),
            [
                {**base, "name": "old", "encrypted_secret": box.encrypt(PASSWORD), "mechanism": "login"},
                {
                    **base,
                    "name": "oldcloud",
                    "encrypted_secret": box.encrypt(""),
                    "mechanism": "xoauth2",
                    "token_source": f"command:touch {planted}",
                },
            ],
        )
    for name in ("old", "oldcloud"):
        refused = f"account '{name}' was stored by an earlier release.*accounts seal {name}"
        with pytest.raises(AccountError, match=refused):
            secret_of(name)
    assert not planted.exists()
    # The operator checked `accounts list` and vouches for the row: bound to the server it names now.
    assert run_cli(["accounts", "seal", "old"]) == 0 and "secret bound to its server" in capsys.readouterr().out
    assert secret_of("old") == PASSWORD
    assert stored_row("old")["token_source"] is None
    assert run_cli(["accounts", "seal", "old"]) == 0 and "already bound" in capsys.readouterr().out
    with engine_for(settings.database_url()).begin() as connection:  # rewritten after sealing: refused again
        connection.execute(sa.update(accounts).where(accounts.c.name == "old").values(host="198.51.100.7"))
    with pytest.raises(AccountError, match="sealed for"):
        secret_of("old")
    add_without_login("new", 143, "--password-stdin", stdin=PASSWORD + "\n")
    new_key = generate_key()
    monkeypatch.setenv("EMAIL_ASSETS_FERNET_KEYS", f"{new_key},{os.environ['EMAIL_ASSETS_FERNET_KEYS']}")
    assert run_cli(["keys", "rotate"]) == 0
    assert "re-encrypted 3" in capsys.readouterr().out
    monkeypatch.setenv("EMAIL_ASSETS_FERNET_KEYS", new_key)
    assert secret_of("new") == PASSWORD  # the old key is gone, the sealed row still opens


def test_keys_rotate_names_the_row_no_key_opens(project_env, monkeypatch, capsys) -> None:
    from email_assets.credentials import generate_key

    add_without_login("work", 143, "--password-stdin", stdin=PASSWORD + "\n")
    before = stored_row("work")["encrypted_secret"]
    monkeypatch.setenv("EMAIL_ASSETS_FERNET_KEYS", generate_key())  # the key of "work" is lost
    add_without_login("other", 143, "--password-stdin", stdin=PASSWORD + "\n")
    assert run_cli(["keys", "rotate"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "account 'work'" in error and "add the key it was written with" in error, error
    assert stored_row("work")["encrypted_secret"] == before


def test_missing_keys_ask_for_the_key_that_encrypted_the_stored_secrets(project_env, monkeypatch, capsys) -> None:
    from email_assets.errors import ConfigurationError

    add_without_login("work", 143, "--password-stdin", stdin=PASSWORD + "\n")
    monkeypatch.setenv("EMAIL_ASSETS_FERNET_KEYS", "")
    wanted = "account 'work' has a stored secret, set it to the key that encrypted it"
    with pytest.raises(ConfigurationError, match=wanted):
        secret_of("work")
    capsys.readouterr()
    for command in (["keys", "rotate"], ["accounts", "test", "work"]):
        assert run_cli(command) == 2
        error = capsys.readouterr().err
        assert wanted in error and "generate one" not in error, error


# --- PostgreSQL: what the server names has no length limit --------------------------------


def test_long_folder_names_and_server_ids_on_an_existing_postgres_database(postgres_databases) -> None:
    """A database made by an earlier release (VARCHAR(512) folders, VARCHAR(255) server
    ids) is migrated in place and keeps its rows."""
    from email_assets.mail.records import FetchedMessage
    from email_assets.storage.database import engine_for
    from email_assets.storage.messages import MessageStore
    from email_assets.storage.tables import folder_state, metadata

    server, tables, _dagster = postgres_databases
    url = f"postgresql+psycopg://{server}/{tables}"
    earlier = sa.create_engine(url)
    metadata.create_all(earlier)
    with earlier.begin() as connection:
        for table, column, length in [
            ("folder_state", "folder", 512),
            ("message_locations", "folder", 512),
            ("raw_messages", "server_id", 255),
            ("raw_messages", "server_thread_id", 255),
        ]:
            connection.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({length})")
    earlier.dispose()
    engine_for.cache_clear()
    when = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
    folder, server_id = "Archive/" + "f" * 600, "id-" + "9" * 300
    store = MessageStore(url)
    kept = FetchedMessage("INBOX", 1, 1, when, (), 20, b"Subject: a\r\n\r\nkept\r\n")
    store.save_fetched("work", [kept], None)
    long = FetchedMessage(folder, 1, 2, when, (), 20, b"Subject: b\r\n\r\nlong\r\n", server_id, server_id)
    store.save_fetched("work", [long], None)
    with store.engine.begin() as connection:
        connection.execute(
            sa.insert(folder_state),
            [
                {
                    "account": "work",
                    "folder": folder,
                    "uidvalidity": 1,
                    "highest_uid": 2,
                    "uidnext": 3,
                    "message_count": 1,
                    "last_sync_at": when,
                }
            ],
        )
        assert connection.execute(sa.select(folder_state.c.folder)).scalars().all() == [folder]
        stored = connection.execute(sa.text("SELECT folder FROM message_locations ORDER BY uid")).scalars().all()
        ids = connection.execute(sa.text("SELECT server_id FROM raw_messages WHERE server_id IS NOT NULL")).scalars()
        assert stored == ["INBOX", folder] and list(ids) == [server_id]
