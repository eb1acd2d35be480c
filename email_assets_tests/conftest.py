"""Fixtures: a real Dovecot for the session, and a fresh project environment per test.

Each test gets its own IMAP user (so mailboxes never mix), its own data directory
(SQLite + embedded Chroma), its own DAGSTER_HOME and its own Fernet key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import io
import itertools
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from email_assets import cli
from email_assets.credentials import generate_key
from email_assets.demo.dovecot import DovecotServer, make_server
from email_assets.storage.database import engine_for
from email_assets_tests import repository_boundary
from email_assets_tests.postgres_server import postgres_server

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_user_numbers = itertools.count(1)


def _running_dovecot(capabilities: str | None = None) -> Iterator[DovecotServer]:
    server = make_server({})
    server.capabilities = capabilities
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    yield from _running_dovecot()


# Dovecot 2.3's own list without CONDSTORE and QRESYNC: a server that can only be diffed.
PLAIN_IMAP_CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
    "LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE "
    "LITERAL+ SPECIAL-USE"
)


@pytest.fixture(scope="session")
def dovecot_without_qresync() -> Iterator[DovecotServer]:
    yield from _running_dovecot(PLAIN_IMAP_CAPABILITIES)


def _new_user(server: DovecotServer, prefix: str) -> MailUser:
    """A fresh user on `server`, so no two tests share a mailbox."""
    number = next(_user_numbers)
    name, password = f"{prefix}{number}", f"pw-{generate_key()[:20]}-{number}"
    server.add_user(name, password)
    return MailUser(server, name, password)


@pytest.fixture
def plain_mail_user(dovecot_without_qresync: DovecotServer) -> MailUser:
    """A user on the server without CONDSTORE/QRESYNC."""
    return _new_user(dovecot_without_qresync, "plain")


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """`user@host:port` of a trust-auth PostgreSQL: the machine's, or one started for the session."""
    with postgres_server() as server:
        yield server


@dataclass
class MailUser:
    server: DovecotServer
    name: str
    password: str

    def append(self, messages: list[tuple[bytes, dt.datetime]], folder: str = "INBOX") -> int:
        return self.server.append(self.name, messages, folder=folder)

    def deliver(self, raw: bytes, internaldate: dt.datetime) -> None:
        """Deliver `raw` to INBOX with this INTERNALDATE even in the future: Dovecot's APPEND
        replaces a future date by the current time, a maildir file's mtime is taken as is."""
        maildir = self.server.maildir(self.name)
        owner = maildir.stat()
        staged = maildir / "tmp" / f"{uuid.uuid4().hex}.delivered"
        staged.write_bytes(raw)
        os.chown(staged, owner.st_uid, owner.st_gid)
        os.utime(staged, (internaldate.timestamp(), internaldate.timestamp()))
        staged.rename(maildir / "new" / staged.name)

    @contextlib.contextmanager
    def session(self, folder: str | None = None, readonly: bool = False) -> Iterator[imaplib.IMAP4_SSL]:
        """A stdlib client logged in as this user (not the code under test), `folder` selected."""
        client = self.server.connect(self.name)
        try:
            if folder is not None:
                client.select(folder, readonly=readonly)
            yield client
        finally:
            client.logout()

    def served(self, folder: str = "INBOX") -> list[bytes]:
        """Every message as Dovecot serves it (bare LF turned into CRLF), by the stdlib client."""
        with self.session(folder, readonly=True) as client:
            _, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
            return [item[1] for item in data if isinstance(item, tuple)]

    def copy(self, uids: str, to_folder: str, from_folder: str = "INBOX") -> None:
        """COPY messages to a new folder, as a mail client filing mail (or Gmail labelling it)."""
        with self.session() as client:
            client.create(to_folder)
            client.select(from_folder)
            client.uid("COPY", uids, to_folder)

    def flag(self, uids: str, flags: str, folder: str = "INBOX") -> None:
        """Add flags, e.g. `\\Flagged` or `\\Seen`, as a mail client marking mail."""
        with self.session(folder) as client:
            client.uid("STORE", uids, "+FLAGS", f"({flags})")

    def move(self, uids: str, to_folder: str, from_folder: str = "INBOX") -> None:
        """MOVE (RFC 6851) to another folder, created if need be."""
        with self.session() as client:
            client.create(to_folder)
            client.select(from_folder)
            typ, data = client.uid("MOVE", uids, to_folder)
            assert typ == "OK", data

    def expunge(self, uids: str, folder: str = "INBOX") -> None:
        """Delete messages on the server, as a mail client would (STORE \\Deleted, EXPUNGE)."""
        with self.session(folder) as client:
            client.uid("STORE", uids, "+FLAGS", "(\\Deleted)")
            client.expunge()


@pytest.fixture
def mail_user(dovecot: DovecotServer) -> MailUser:
    return _new_user(dovecot, "user")


@pytest.fixture
def project_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment of one operator: data dir, DAGSTER_HOME with the project's dagster.yaml."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("EMAIL_ASSETS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMAIL_ASSETS_FERNET_KEYS", generate_key())
    monkeypatch.setenv("EMAIL_ASSETS_RETENTION_DAYS", "0")
    for name in ("EMAIL_ASSETS_DATABASE_URL", "EMAIL_ASSETS_CHROMA", "EMAIL_ASSETS_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def postgres_databases(postgres: str) -> Iterator[tuple[str, str, str]]:
    """(server, tables database, Dagster database)."""
    suffix = uuid.uuid4().hex[:10]
    names = (f"email_assets_{suffix}", f"dagster_{suffix}")
    with psycopg.connect(f"postgresql://{postgres}/postgres", autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (postgres, *names)
    finally:
        engine_for.cache_clear()
        with psycopg.connect(f"postgresql://{postgres}/postgres", autocommit=True) as connection:
            for name in names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def record_reliability(
    suite: str, cases: int, lost: int | None, duplicated: int | None, leaked: int | None, crashed: int
) -> None:
    """One line of figures for `make reliability` (EMAIL_ASSETS_RELIABILITY_REPORT), else nothing.

    Tests record what they measured before asserting on it, so a failing case still shows
    up in the figures with its real counts.
    """
    path = os.environ.get("EMAIL_ASSETS_RELIABILITY_REPORT")
    if not path:
        return
    figures = {"suite": suite, "cases": cases, "lost": lost, "duplicated": duplicated}
    figures.update(leaked=leaked, crashed=crashed)
    with open(path, "a", encoding="utf-8") as report:
        report.write(json.dumps(figures) + "\n")


def run_cli(args: list[str], stdin: str = "") -> int:
    previous = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return cli.main(args)
    finally:
        sys.stdin = previous


def add_account(user: MailUser, name: str = "work", extra: list[str] | None = None, password: str | None = None) -> int:
    """`email-assets accounts add` for a test user; `password` overrides the right one."""
    return run_cli(
        [
            "accounts",
            "add",
            name,
            "--host",
            user.server.host,
            "--port",
            str(user.server.imaps_port),
            "--username",
            user.name,
            "--password-stdin",
            "--ca-file",
            str(user.server.ca_file),
            *(extra or []),
        ],
        stdin=(user.password if password is None else password) + "\n",
    )


@pytest.fixture
def instance(project_env: Path) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as dagster_instance:
        yield dagster_instance


def message(
    subject: str,
    body: str,
    message_id: str | None = None,
    sender: str = "Ana <ana@example.org>",
    extra_headers: str = "",
) -> bytes:
    msgid = message_id or f"<{subject.replace(' ', '.').lower()}@example.org>"
    return (
        f"From: {sender}\r\nTo: Demo <demo@example.test>\r\nSubject: {subject}\r\n"
        f"Message-ID: {msgid}\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\n{extra_headers}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def utc(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), dt.UTC)


# Markers by the services a test starts, derived from the fixtures it uses, so a new test is
# marked by what it needs without anyone remembering to: `make test-fast` deselects them all.
SERVICE_FIXTURES = {
    "dovecot": {"dovecot", "dovecot_without_qresync", "mail_user", "plain_mail_user"},
    "postgres": {"postgres", "postgres_databases"},
    "chroma_server": {"chroma_server"},
}
SERVICE_MARKERS = {*SERVICE_FIXTURES, "daemon", "browser", "celery", "slow"}


def pytest_configure(config: pytest.Config) -> None:
    for name in sorted(SERVICE_MARKERS):
        config.addinivalue_line("markers", f"{name}: needs {name} (conftest.SERVICE_FIXTURES); make test-fast skips it")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in SERVICE_FIXTURES.items():
            if used & fixtures:
                item.add_marker(marker)


os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The tests use fixed days of 2026; the partitions' default start follows the retention
# window (today - 30 days), and the definitions are imported once, at collection. Pinned,
# the in-process definitions and those of a daemon started by a test have the same days.
os.environ.setdefault("EMAIL_ASSETS_START_DATE", "2024-01-01")
repository_boundary.install()
# The code location is defined here, once, from the environment the suite started with, as
# a code server would be: resources read `EMAIL_ASSETS_*` variables as `dg.EnvVar`s only
# where they were set at definition time, so a test that sets one for a while (the
# multi-host test does) must not be the first to import the definitions.
import email_assets.definitions  # noqa: E402, F401
