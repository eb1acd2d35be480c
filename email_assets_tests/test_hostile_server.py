"""A hostile IMAP server against the real sync: every answer it controls is bounded.

Each case scripts one attack on a loopback server (`scripted_imap`) and runs the real
entry point, `sync_account_days` (or the sensor's `detect_changes`), then asserts the real
outcome: what is stored (nothing that should not be, byte for byte what should), the
one-line error or per-message defect, and that the sync ended within its deadline. Each
case records its figures for `make reliability` before asserting: messages tried, lost
(neither stored nor named in the report), duplicated (stored twice or under a UID not
asked for), leaked (the password in an error or the log), crashed (a traceback, or past the
deadline), seconds and peak traced memory (target: under 256 MB).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from email_assets import pipeline
from email_assets.errors import UserError
from email_assets.mail.changes import detect_changes
from email_assets.mail.imap_connect import ImapEndpoint, connect
from email_assets.mail.sync import SyncReport
from email_assets.storage.accounts import Account
from email_assets.storage.connection_slots import ConnectionSlots
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import message_locations
from email_assets_tests.conftest import message
from email_assets_tests.scripted_imap import Line, ScriptedImapServer, Stream, endless, literal

PASSWORD = "hostile-server-password-7f3a"
DAY = dt.date(2026, 11, 20)
UIDVALIDITY = 1796172267
PEAK_MB_TARGET = 256
LIST = (b"LIST", [b'* LIST (\\HasNoChildren) "/" INBOX'])
SEARCH = b"UID SEARCH RETURN (ALL) SINCE 19-Nov-2026 BEFORE 22-Nov-2026"


def _examine(exists: int, uidnext: int) -> tuple[bytes, list[Line]]:
    return (
        b"EXAMINE",
        [
            f"* {exists} EXISTS".encode(),
            f"* OK [UIDVALIDITY {UIDVALIDITY}] UIDs valid".encode(),
            f"* OK [UIDNEXT {uidnext}] Predicted next UID".encode(),
        ],
    )


def _date(number: int, uid: int, date: str = "20-Nov-2026 10:00:00 +0000", size: int = 10) -> bytes:
    return f'* {number} FETCH (UID {uid} INTERNALDATE "{date}" RFC822.SIZE {size})'.encode()


def _body(number: int, uid: int, raw: bytes, date: str = "20-Nov-2026 10:00:00 +0000", size: int = 10) -> list[Line]:
    """One `BODY[]` answer as lines: the literal's bytes are followed by `)` on its line."""
    head = f'* {number} FETCH (UID {uid} INTERNALDATE "{date}" FLAGS () RFC822.SIZE {size} BODY[] {{{len(raw)}}}'
    return [head.encode(), raw + b")"]


@dataclass
class Outcome:
    report: SyncReport | None = None
    error: str | None = None  # a one-line UserError
    crashed: str | None = None  # anything else that escaped: a traceback in production
    seconds: float = 0.0
    peak_mb: float = 0.0
    log: list[str] = field(default_factory=list)


@pytest.fixture
def store(tmp_path: Path) -> MessageStore:
    return MessageStore(f"sqlite:///{tmp_path / 'hostile.sqlite'}")


def _measured(work: Callable[[], object], outcome: Outcome) -> object:
    tracemalloc.start()
    started = time.monotonic()
    try:
        return work()
    except UserError as error:
        outcome.error = str(error)
    except Exception as error:  # noqa: BLE001 - recorded as a crash, then asserted on
        outcome.crashed = f"{type(error).__name__}: {error}"[:300]
    finally:
        outcome.seconds = time.monotonic() - started
        outcome.peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return None


def _sync(
    monkeypatch: pytest.MonkeyPatch,
    store: MessageStore,
    script: list[tuple[bytes, list[Line]]],
    days: list[dt.date] | None = None,
    timeout: float = 5.0,
) -> tuple[Outcome, ScriptedImapServer]:
    """`sync_account_days` against the script, with a per-command timeout of `timeout`."""
    monkeypatch.setattr(
        pipeline, "endpoint_of", lambda account: ImapEndpoint(account.host, account.port, "plain", timeout=timeout)
    )
    outcome = Outcome()
    with ScriptedImapServer(script) as server:
        account = Account("work", "127.0.0.1", server.port, "user", "plain", [], 1, None, b"")
        outcome.report = _measured(  # type: ignore[assignment]
            lambda: pipeline.sync_account_days(account, PASSWORD, store, days or [DAY], None, outcome.log.append),
            outcome,
        )
    assert ConnectionSlots(store.url).try_acquire("work", 1, "next") == 0  # the slot was given back
    return outcome, server


def _stored(store: MessageStore, days: list[dt.date] | None = None) -> dict[int | str, bytes]:
    """UID -> stored bytes of INBOX, plus any raw row of the days that no location names
    (under its key: a stored copy nothing points to counts as a duplicate)."""
    with store.engine.connect() as connection:
        keys = dict(
            connection.execute(
                sa.select(message_locations.c.uid, message_locations.c.message_key).where(
                    message_locations.c.account == "work", message_locations.c.folder == "INBOX"
                )
            ).all()
        )
    rows = [row["message_key"] for day in days or [DAY] for row in store.raw_in_partition("work", day.isoformat())]
    raw = store.raw_bytes([*keys.values(), *rows])
    stored: dict[int | str, bytes] = {uid: raw[key] or b"" for uid, key in keys.items()}
    stored.update({key: raw[key] or b"" for key in rows if key not in keys.values()})
    return stored


def _figures(case: str, tried: int, lost: int, duplicated: int, outcome: Outcome, deadline: float) -> None:
    """The case's figures for `make reliability` (EMAIL_ASSETS_RELIABILITY_REPORT), written
    before the assertions so that a failing case shows its real counts."""
    figures = {
        "suite": f"hostile server: {case}",
        "cases": tried,
        "lost": lost,
        "duplicated": duplicated,
        "leaked": sum(PASSWORD in text for text in [outcome.error or "", outcome.crashed or "", *outcome.log]),
        "crashed": int(outcome.crashed is not None or outcome.seconds > deadline),
        "seconds": round(outcome.seconds, 2),
        "peak_mb": round(outcome.peak_mb, 1),
    }
    path = os.environ.get("EMAIL_ASSETS_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as lines:
            lines.write(json.dumps(figures) + "\n")
    assert figures["leaked"] == 0 and figures["crashed"] == 0, (figures, outcome)
    assert outcome.peak_mb < PEAK_MB_TARGET, figures


def _record(
    case: str, tried: int, outcome: Outcome, stored: dict[int, bytes], wanted: set[int], deadline: float
) -> None:
    """A sync's figures: lost = wanted UIDs neither stored nor named in the report (a
    defect line, or a failure of their day), none if the run failed in one line (nothing
    was claimed: the next run asks again); duplicated = stored under a UID not wanted."""
    report = outcome.report
    named = " ".join(report.defects) if report else ""
    unaccounted = [uid for uid in wanted - set(stored) if f"UID {uid}:" not in named]
    failures = sum(report.failures.values()) if report else 0
    lost = 0 if outcome.error is not None else max(0, len(unaccounted) - failures)
    _figures(case, tried, lost, len(set(stored) - wanted), outcome, deadline)


def test_a_gigabyte_literal_outside_a_body_fails_in_one_line_without_being_held(monkeypatch, store) -> None:  # noqa: ANN001
    """A folder name announced as 1 GiB: refused at its announcement, past 1 MiB."""
    script = [(b"LIST", [b'* LIST (\\HasNoChildren) "/" {1073741824}', literal(1 << 30)])]
    outcome, _ = _sync(monkeypatch, store, script)
    stored = _stored(store)
    _record("1 GiB literal in LIST", 1, outcome, stored, set(), deadline=30)
    assert outcome.error is not None and "\n" not in outcome.error
    assert outcome.error.startswith("IMAP session with 127.0.0.1:")
    assert outcome.error.endswith(
        "failed: LIST answered with a literal of 1073741824 bytes, over the 1048576 allowed here"
    )
    assert stored == {} and outcome.peak_mb < 16


def test_esearch_naming_every_uid_is_a_protocol_error(monkeypatch, store) -> None:  # noqa: ANN001
    """`ALL 1:4294967295` in a folder of 2 messages: one line, never four billion UIDs."""
    script = [LIST, _examine(2, 3), (SEARCH, [b'* ESEARCH (TAG "{tag}") UID ALL 1:4294967295'])]
    outcome, server = _sync(monkeypatch, store, script)
    stored = _stored(store)
    _record("ESEARCH ALL 1:4294967295", 2, outcome, stored, set(), deadline=30)
    assert outcome.error is not None and outcome.error.startswith("SEARCH in INBOX on 127.0.0.1:")
    assert outcome.error.endswith(": SEARCH answer names 4294967295 UIDs, more than the 2 the folder can hold")
    assert stored == {} and not any(command.startswith(b"UID FETCH") for command in server.commands)


class _Stored:
    """Stored locations of INBOX, as the sensor reads them."""

    def __init__(self, locations: dict[int, tuple[dt.date, str]]) -> None:
        self.locations = locations

    def stored_locations(
        self, account: str, folder: str, uidvalidity: int, uids: list[int] | None = None
    ) -> dict[int, tuple[dt.date, str]]:
        return {uid: place for uid, place in self.locations.items() if uids is None or uid in uids}


def test_vanished_naming_every_uid_stays_ranges(monkeypatch) -> None:  # noqa: ANN001
    """`VANISHED (EARLIER) 4:4294967295` from a QRESYNC server: the stored UIDs in it are
    found without expanding it, and only their days are reported."""
    uidnext = 4_000_000_000  # a big folder's UIDNEXT: clipping alone would leave 4e9 UIDs
    stored = _Stored({3: (DAY, ""), 5: (DAY + dt.timedelta(days=1), ""), 40: (DAY + dt.timedelta(days=2), "")})
    status = f"* STATUS INBOX (MESSAGES 1 UIDNEXT {uidnext} UIDVALIDITY {UIDVALIDITY} HIGHESTMODSEQ 50)"
    script: list[tuple[bytes, list[Line]]] = [
        (b"ENABLE QRESYNC", [b"* ENABLED QRESYNC"]),
        (b'STATUS "INBOX"', [status.encode()]),
        _examine(1, uidnext),
        (
            b"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 40 VANISHED)",
            [b"* VANISHED (EARLIER) 4:4294967295", b"* 1 FETCH (UID 3 FLAGS () MODSEQ (41))"],
        ),
    ]
    previous = {"INBOX": {"uidvalidity": UIDVALIDITY, "uidnext": uidnext, "messages": 3, "highestmodseq": 40}}
    outcome = Outcome()
    with ScriptedImapServer(script) as server:

        async def detect():  # noqa: ANN202
            endpoint = ImapEndpoint("127.0.0.1", server.port, "plain", timeout=5)
            async with connect(endpoint, "user", PASSWORD) as session:
                return await detect_changes(session, "work", ["INBOX"], previous, stored, now=0.0)

        changes = _measured(lambda: asyncio.run(detect()), outcome)
    missed = 2 - (changes.expunged if changes is not None else 0)  # 5 and 40 are gone, 3 is not
    _figures("VANISHED 4:4294967295 (sensor)", 3, max(0, missed), 0, outcome, deadline=30)
    assert outcome.error is None and changes is not None
    assert changes.expunged == 2 and changes.flag_changes == 0
    assert changes.days == {DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)}


def test_endless_unsolicited_flags_do_not_hold_a_fetch(monkeypatch, store) -> None:  # noqa: ANN001
    """UID 1's body, then `* 2 FETCH (FLAGS (\\Seen))` forever instead of UID 2's: the
    FETCH ends after its idle timeout, in one line, and frees its connection slot."""
    raw = message("first", "the first body")
    script = [
        LIST,
        _examine(2, 3),
        (SEARCH, [b'* ESEARCH (TAG "{tag}") UID ALL 1:2']),
        (b"UID FETCH 1:2 (UID INTERNALDATE RFC822.SIZE)", [_date(1, 1), _date(2, 2)]),
        (b"UID FETCH 1:2 (UID INTERNALDATE FLAGS", [*_body(1, 1, raw), endless(b"* 2 FETCH (FLAGS (\\Seen))", 60)]),
    ]
    outcome, _ = _sync(monkeypatch, store, script, timeout=3)
    stored = _stored(store)
    _record("endless unsolicited FETCH FLAGS", 2, outcome, stored, {1}, deadline=30)
    assert outcome.error is not None and outcome.error.endswith("failed: no data for 3s during FETCH")
    assert outcome.seconds < 30  # idle timeout 3 s (slower under tracemalloc); the server would go on for 60
    assert set(stored) <= {1} and stored.get(1, raw) == raw


def test_a_trickled_fetch_ends_at_its_overall_deadline(monkeypatch, store) -> None:  # noqa: ANN001
    """Four asked bodies, one every 4 s with a 6 s idle timeout: each resets the idle timer,
    but the FETCH's deadline (6 s + 1 s per UID) ends it at 10 s, not 12."""
    bodies = {uid: message(f"slow {uid}", f"body {uid}") for uid in range(1, 5)}
    answers = [b"\r\n".join(_body(uid, uid, raw)) + b"\r\n" for uid, raw in bodies.items()]
    script = [
        LIST,
        _examine(4, 5),
        (SEARCH, [b'* ESEARCH (TAG "{tag}") UID ALL 1:4']),
        (b"UID FETCH 1:4 (UID INTERNALDATE RFC822.SIZE)", [_date(uid, uid) for uid in bodies]),
        (b"UID FETCH 1:4 (UID INTERNALDATE FLAGS", [Stream(lambda: iter(answers), pause=4.0)]),
    ]
    outcome, _ = _sync(monkeypatch, store, script, timeout=6)
    stored = _stored(store)
    _record("trickled FETCH past its deadline", 4, outcome, stored, set(bodies), deadline=30)
    assert outcome.error is not None and outcome.error.endswith("FETCH not complete within its deadline of 10s")
    assert 9 < outcome.seconds < 30
    assert all(stored[uid] == bodies[uid] for uid in stored)


def test_a_response_line_that_never_ends_is_cut_at_its_bound(monkeypatch, store) -> None:  # noqa: ANN001
    """`* SEARCH 1 1 1 ...` with no CRLF, for as long as the client listens: the command
    fails once the line passes 16 MiB, long before its timeout, holding little more."""
    script = [
        LIST,
        _examine(2, 3),
        (SEARCH, [Stream(lambda: itertools.chain([b"* SEARCH"], itertools.repeat(b" 1" * 50_000)))]),
    ]
    outcome, _ = _sync(monkeypatch, store, script, timeout=30)
    stored = _stored(store)
    _record("endless response line in SEARCH", 2, outcome, stored, set(), deadline=30)
    assert outcome.error is not None and outcome.error.endswith(
        "failed: UID SEARCH answered with a response line longer than 16777216 bytes"
    )
    assert outcome.seconds < 25 and stored == {}


def test_answers_for_uids_not_asked_are_never_stored(monkeypatch, store) -> None:  # noqa: ANN001
    """Asked for UIDs 1 and 2: `* 1 FETCH (UID 999 ...)` and a second answer for UID 2 are
    dropped and counted; UID 1 is named in the report, UID 2 keeps its first body."""
    first, second, again = (message(subject, f"{subject} body") for subject in ("one", "two", "two again"))
    script = [
        LIST,
        _examine(2, 3),
        (SEARCH, [b'* ESEARCH (TAG "{tag}") UID ALL 1:2']),
        (b"UID FETCH 1:2 (UID INTERNALDATE RFC822.SIZE)", [_date(1, 1), _date(2, 2)]),
        (b"UID FETCH 1:2 (UID INTERNALDATE FLAGS", [*_body(1, 999, first), *_body(2, 2, second), *_body(2, 2, again)]),
        (b"UID FETCH 1 (UID INTERNALDATE RFC822.SIZE)", [_date(1, 999)]),
    ]
    outcome, _ = _sync(monkeypatch, store, script)
    stored = _stored(store)
    _record("FETCH answers for other UIDs", 2, outcome, stored, {1, 2}, deadline=30)
    assert outcome.error is None and outcome.report is not None
    assert stored == {2: second}
    assert outcome.report.ignored_answers == 3
    assert outcome.report.defects == ["INBOX: UID 1: answered only under another UID; not stored"]
    assert "skipped: INBOX: UID 1: answered only under another UID; not stored" in outcome.log


def test_a_message_larger_than_announced_is_bounded(monkeypatch, store) -> None:  # noqa: ANN001
    """Both announced as RFC822.SIZE 10: UID 1 is a 65 MiB literal (over the 64 MiB
    limit), read past without being held and counted as a failure of its day; UID 2 is
    3 KB, stored byte for byte with its real size."""
    small = message("small", "x" * 3000)
    big = 65 << 20
    script = [
        LIST,
        _examine(2, 3),
        (SEARCH, [b'* ESEARCH (TAG "{tag}") UID ALL 1:2']),
        (b"UID FETCH 1:2 (UID INTERNALDATE RFC822.SIZE)", [_date(1, 1), _date(2, 2)]),
        (
            b"UID FETCH 1:2 (UID INTERNALDATE FLAGS",
            [
                _body(1, 1, b"")[0].replace(b"{0}", f"{{{big}}}".encode()),
                literal(big),
                b")",
                *_body(2, 2, small),
            ],
        ),
        (b"UID FETCH 1 (UID INTERNALDATE RFC822.SIZE)", [_date(1, 1)]),
    ]
    outcome, _ = _sync(monkeypatch, store, script)
    stored = _stored(store)
    _record("65 MiB body announced as 10 bytes", 2, outcome, stored, {1, 2}, deadline=60)
    assert outcome.error is None and outcome.report is not None
    assert stored == {2: small}
    sizes = [row["size"] for row in store.raw_in_partition("work", DAY.isoformat())]
    assert sizes == [len(small)]
    assert outcome.report.failures == {DAY.isoformat(): 1} and outcome.report.fetched == {DAY.isoformat(): 1}
    assert outcome.report.defects == [f"INBOX: UID 1: body of {big} bytes over the {64 << 20} allowed; skipped"]
    assert outcome.peak_mb < 32  # read past, never held


def test_malformed_internaldates_are_per_message_defects(monkeypatch, store) -> None:  # noqa: ANN001
    """Three days; UID 1 (an edge day) has 31-Feb as its date, UID 2 (found inside the
    range, so fetched without a date first) has month "Foo" in its body's answer: both
    are named defects, UID 3 is stored, and the sync completes."""
    days = [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)]
    third = message("three", "third body")
    script = [
        LIST,
        _examine(3, 4),
        (b"UID SEARCH RETURN (ALL) SINCE 18-Nov-2026", [b'* ESEARCH (TAG "{tag}") UID ALL 1:3']),
        (b"UID SEARCH RETURN (ALL) SINCE 20-Nov-2026", [b'* ESEARCH (TAG "{tag}") UID ALL 2:3']),
        (b"UID FETCH 1 (UID INTERNALDATE RFC822.SIZE)", [_date(1, 1, "31-Feb-2026 10:00:00 +0000")]),
        (
            b"UID FETCH 2:3 (UID INTERNALDATE FLAGS",
            [*_body(2, 2, b"Subject: two\r\n\r\nbody", "20-Foo-2026 10:00:00 +0000"), *_body(3, 3, third)],
        ),
        (b"UID FETCH 2 (UID INTERNALDATE RFC822.SIZE)", [_date(2, 2, "20-Foo-2026 10:00:00 +0000")]),
    ]
    outcome, _ = _sync(monkeypatch, store, script, days)
    stored = _stored(store, days)
    _record("malformed INTERNALDATE", 3, outcome, stored, {1, 2, 3}, deadline=30)
    assert outcome.crashed is None and outcome.error is None and outcome.report is not None
    assert stored == {3: third}
    assert outcome.report.defects == [
        "INBOX: UID 1: malformed INTERNALDATE '31-Feb-2026 10:00:00 +0000'; skipped",
        "INBOX: UID 2: malformed INTERNALDATE '20-Foo-2026 10:00:00 +0000'; skipped",
    ]


@pytest.fixture(autouse=True)
def _no_tracing_left() -> Iterator[None]:
    yield
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def test_the_message_size_limit_is_a_setting(monkeypatch) -> None:
    import pytest

    from email_assets.account_access import endpoint_of
    from email_assets.errors import ConfigurationError

    account = Account("work", "127.0.0.1", 993, "user", "ssl", [], 1, None, b"")
    assert endpoint_of(account).limits.max_message_bytes == 64 << 20
    monkeypatch.setenv("EMAIL_ASSETS_MAX_MESSAGE_MB", "5")
    assert endpoint_of(account).limits.max_message_bytes == 5 << 20
    monkeypatch.setenv("EMAIL_ASSETS_MAX_MESSAGE_MB", "lots")
    with pytest.raises(ConfigurationError, match="EMAIL_ASSETS_MAX_MESSAGE_MB must be a whole number"):
        endpoint_of(account)
