"""Careless input and hostile text at the CLI (security review, issue 20, items 8-12 and 15).

Every mistake is one line on stderr and exit status 2, checked line for line; text written
by a sender or a server reaches the terminal with its control and bidi characters escaped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import re
import select
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._daemon.types import DaemonHeartbeat

from email_assets import settings
from email_assets.account_access import login_secret
from email_assets.cli import _account_name
from email_assets.credentials import SecretBox
from email_assets.defs import backfills
from email_assets.defs.materialize import materialize_partitions
from email_assets.storage.accounts import AccountStore
from email_assets.terminal import has_control, json_line, safe_text
from email_assets_tests.conftest import add_account, message, run_cli, utc
from email_assets_tests.scripted_imap import ScriptedImapServer
from email_assets_tests.test_cli import EXECUTABLE, cli
from email_assets_tests.test_end_to_end import DAY

# What a hostile sender or server puts in a subject, a folder name or an error line: an
# OSC 52 clipboard write, a screen clear, a fake line and a right-to-left override.
HOSTILE = "Invoice\x1b]52;c;cm0gLXJmIH4=\x07 paid\x1b[2J\r\nemail-assets: all clear \u202etxt.exe\x9b"
HOSTILE_ESCAPED = (
    "Invoice\\x1b]52;c;cm0gLXJmIH4=\\x07 paid\\x1b[2J\\x0d\\x0aemail-assets: all clear \\u202etxt.exe\\x9b"
)
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\u202e", "\x9b")
TODAY = dt.datetime.now(dt.UTC).date()


def assert_terminal_safe(text: str) -> None:
    for character in RAW_CONTROLS:
        assert character not in text, (character, text)


def one_error(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """stderr is exactly this one error line (nothing else, no traceback)."""
    assert capsys.readouterr().err == f"email-assets: error: {line}\n"


# -- item 8: the escaping function itself ---------------------------------------------------


def test_safe_text_escapes_controls_and_bidi_and_nothing_else() -> None:
    assert safe_text(HOSTILE) == HOSTILE_ESCAPED
    assert safe_text("Grüße, 東京 — ok\\n") == "Grüße, 東京 — ok\\n"  # text, and a backslash, untouched
    for character in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\x7f\x80\x85\u2028":
        assert (
            safe_text(f"a{character}b")
            == f"a\\{'x' if ord(character) < 256 else 'u'}{ord(character):0{2 if ord(character) < 256 else 4}x}b"
        )
    assert safe_text("one\ttwo\nthree") == "one\\x09two\\x0athree"  # one line stays one line
    assert safe_text("line one\n\tline two\r\x1b[2J", multiline=True) == "line one\n\tline two\\x0d\\x1b[2J"
    assert has_control("work\n") and has_control("a\u202eb") and not has_control("Grüße")


def test_json_stays_exact_and_carries_no_raw_control() -> None:
    """JSON decodes to the very same text; C1 and bidi characters travel as \\uXXXX escapes,
    which a JSON reader reads back identically, so the bytes on a terminal are inert."""
    value = {"subject": HOSTILE, "from": "ana@example.org", "n": 3}
    line = json_line(value)
    assert json.loads(line) == value
    assert "\n" not in line and "\\u202e" in line and "\\u009b" in line and "Grüße" in json_line("Grüße")
    assert_terminal_safe(line)


# -- items 9 and 12: one-line errors for careless input --------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["search", ""], "argument text: the search text is empty: say what to look for"),
        (["search", "   "], "argument text: the search text is empty: say what to look for"),
        (["search", "x", "--account", ""], "argument --account: must not be empty (leave the option out instead)"),
        (["search", "x", "--from", ""], "argument --from: must not be empty (leave the option out instead)"),
        (["search", "x", "--folder", " "], "argument --folder: must not be empty (leave the option out instead)"),
        (
            ["search", "x", "--until", "9999-12-31"],
            "--until 9999-12-31 is past the last day a search can end on: leave --until out",
        ),
        (
            ["search", "x", "--chunks", "-k", str(10**23)],
            f"argument -k: must be a whole number from 1 to 1000: '{10**23}'",
        ),
        (["search", "x", "-k", "²"], "argument -k: must be a whole number from 1 to 1000: '²'"),
        (
            ["search", "x", "--since", "2026-11-02", "--until", "2026-11-01"],
            "--since 2026-11-02 is after --until 2026-11-01",
        ),
        (
            ["accounts", "add", "work", "--host", "h", "--port", "99999", "--username", "u", "--password-stdin"],
            "argument --port: must be a whole number from 1 to 65535: '99999'",
        ),
        (
            ["accounts", "add", "work", "--host", "h", "--username", "me\r\nA1 LOGOUT", "--password-stdin"],
            "argument --username: must be one line without control characters: 'me\\r\\nA1 LOGOUT'",
        ),
        (
            ["accounts", "add", "work", "--host", "h\n", "--username", "u", "--password-stdin"],
            "argument --host: must be one line without control characters: 'h\\n'",
        ),
        (
            ["accounts", "add", "work", "--host", "h", "--username", "u", "--password-stdin", "--folders", " , "],
            "--folders names no folder: leave it out to sync all but Junk and Trash",
        ),
        # item 10: `$` also matches before a trailing newline; the slug is matched whole.
        (
            ["accounts", "add", "work\n", "--host", "h", "--username", "u", "--password-stdin"],
            "argument name: 'work\\n' is not a slug: use lowercase letters, digits, '-' and '_' (max 64)",
        ),
    ],
)
def test_careless_input_is_one_line_and_exit_2(project_env, capsys, args, line) -> None:
    assert run_cli(args, stdin="secret\n") == 2
    one_error(capsys, line)
    assert not (project_env / "data").exists()  # refused before any store was opened


def test_account_name_is_matched_whole() -> None:
    assert _account_name("work") == "work"
    for name in ("work\n", "work\r\n", "Work", "-work", "a" * 65):
        with pytest.raises(Exception, match="is not a slug"):
            _account_name(name)


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["search", "x"], ["trace", "abc"]])
def test_read_only_commands_create_no_store_at_a_mistyped_data_dir(project_env, command) -> None:
    data_dir = project_env / "mistyped"
    result = cli(*command, env={"EMAIL_ASSETS_DATA_DIR": str(data_dir)})
    assert result.returncode == 2
    assert result.stderr == (
        f"email-assets: error: no store at {data_dir / 'email_assets.sqlite'}: nothing was ever stored in the data "
        f"dir {data_dir} (EMAIL_ASSETS_DATA_DIR); set EMAIL_ASSETS_DATA_DIR or EMAIL_ASSETS_DATABASE_URL to the "
        "store you filled, or add an account to start one\n"
    )
    assert not data_dir.exists()


def test_read_only_commands_create_no_sqlite_file_named_by_url(project_env) -> None:
    path = project_env / "elsewhere" / "typo.sqlite"
    result = cli("status", env={"EMAIL_ASSETS_DATABASE_URL": f"sqlite:///{path}"})
    assert result.returncode == 2
    assert result.stderr == (
        f"email-assets: error: no store at {path} (EMAIL_ASSETS_DATABASE_URL); set EMAIL_ASSETS_DATA_DIR or "
        "EMAIL_ASSETS_DATABASE_URL to the store you filled, or add an account to start one\n"
    )
    assert not path.parent.exists()


# -- item 11: backfills --------------------------------------------------------------------


def test_backfill_outside_the_partitions_is_refused_before_anything_is_recorded(project_env) -> None:
    """The README's own example, a month before a 30-day window, and a far-off --until."""
    dagster_home = project_env / "no_instance_yet"
    env = {"EMAIL_ASSETS_START_DATE": "", "EMAIL_ASSETS_RETENTION_DAYS": "30", "DAGSTER_HOME": str(dagster_home)}
    first, last = TODAY - dt.timedelta(days=29), TODAY
    holds = (
        f"is outside the day partitions, which hold {first}..{last} (the first day is EMAIL_ASSETS_START_DATE, "
        "else the first the EMAIL_ASSETS_RETENTION_DAYS window keeps; the last is today, UTC)"
    )
    early = (first - dt.timedelta(days=40)).isoformat()
    for args, outside in (
        (["--since", early, "--until", (first - dt.timedelta(days=10)).isoformat()], f"--since {early}"),
        (["--since", first.isoformat(), "--until", "9999-12-31"], "--until 9999-12-31"),
    ):
        started = time.monotonic()
        result = cli("backfill", "work", *args, "--wait", env=env)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr == f"email-assets: error: {outside} {holds}\n"
        assert time.monotonic() - started < 60  # was 95 s and 1.25 GB for 9999-12-31
    assert not dagster_home.exists()


def test_backfill_since_after_until_is_one_line(project_env, capsys) -> None:
    assert run_cli(["backfill", "work", "--since", "2026-11-05", "--until", "2026-11-01"]) == 2
    one_error(capsys, "--until 2026-11-01 is before --since 2026-11-05")


def test_backfill_wait_without_a_daemon_says_so(instance, project_env, capsys, monkeypatch) -> None:
    monkeypatch.setattr(backfills, "DAEMON_NOTE_SECONDS", 0.2)
    monkeypatch.setattr(backfills, "DAEMON_GRACE_SECONDS", 1.0)
    instance.add_dynamic_partitions("accounts", ["work"])
    started = time.monotonic()
    assert run_cli(["backfill", "work", "--since", "2026-11-01", "--until", "2026-11-01", "--wait"]) == 2
    assert time.monotonic() - started < 30
    [backfill] = instance.get_backfills()
    note, error = capsys.readouterr().err.splitlines()
    nobody = (
        rf"no dagster-daemon heartbeat in this instance \(DAGSTER_HOME {re.escape(str(project_env))}/dagster_home\) "
        rf"for \d s: backfill {backfill.backfill_id} is recorded and runs once `dagster-daemon run` "
        r"\(or `dagster dev`\) is started with this DAGSTER_HOME"
    )
    assert re.fullmatch(f"note: {nobody}; waiting 1 s", note), note
    assert re.fullmatch(f"email-assets: error: {nobody}", error), error


@dg.asset
def disk_on_fire() -> None:
    raise ValueError("the disk is on fire\nsecond line of the story")


def _act_as_the_daemon(dagster_home: Path, stop: threading.Event) -> None:
    """Beat like a daemon; fail the first backfill that appears with one failed run of it."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        while not stop.is_set():
            instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), backfills.BACKFILL_DAEMON, "test", None))
            found = [b for b in instance.get_backfills() if b.status == BulkActionStatus.REQUESTED]
            if found:
                tags = {BACKFILL_ID_TAG: found[0].backfill_id}
                quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # stderr: the CLI's alone
                dg.materialize([disk_on_fire], instance=instance, tags=tags, raise_on_error=False, run_config=quiet)
                instance.update_backfill(found[0].with_status(BulkActionStatus.COMPLETED_FAILED))
            time.sleep(0.2)


def test_backfill_wait_names_the_failed_runs_and_their_first_error(instance, project_env, capsys) -> None:
    instance.add_dynamic_partitions("accounts", ["work"])
    stop = threading.Event()
    daemon = threading.Thread(target=_act_as_the_daemon, args=(project_env / "dagster_home", stop))
    daemon.start()
    try:
        assert run_cli(["backfill", "work", "--since", "2026-11-01", "--until", "2026-11-02", "--wait"]) == 2
    finally:
        stop.set()
        daemon.join(30)
    [backfill] = instance.get_backfills()
    [run] = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill.backfill_id}))
    assert capsys.readouterr().err == (
        f"email-assets: error: backfill {backfill.backfill_id} ended completed_failed: "
        f"run {run.run_id} failed: ValueError: the disk is on fire\n"
    )


# -- item 15: accounts add -----------------------------------------------------------------


def _run_in_a_terminal(args: list[str], typed: str) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its controlling terminal and stdin, type `typed`
    at the prompt; returns the exit status and everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        os.execv(EXECUTABLE, [EXECUTABLE, *args])
    shown = b""
    deadline = time.monotonic() + 60
    while b"password: " not in shown and time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            shown += os.read(fd, 1024)
    os.write(fd, typed.encode() + b"\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_password_typed_at_a_terminal_is_not_echoed(project_env) -> None:
    password = "correct-horse-battery-staple"
    args = ["accounts", "add", "work", "--host", "127.0.0.1", "--username", "me", "--password-stdin", "--no-verify"]
    code, shown = _run_in_a_terminal(args, password)
    assert code == 0, shown
    assert "password: " in shown and "added account work" in shown
    assert password not in shown
    stored = AccountStore(settings.database_url()).get("work")
    assert login_secret(stored, SecretBox.from_environment()) == password  # what was typed, not echoed


def test_plain_imap_to_another_host_warns_that_the_password_crosses_in_clear(project_env, capsys) -> None:
    base = ["accounts", "add", "--username", "me", "--password-stdin", "--no-verify", "--security", "plain"]
    assert run_cli([*base[:2], "remote", *base[2:], "--host", "mail.example.com"], stdin="pw\n") == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "warning: --security plain: the password of me will cross the network to mail.example.com unencrypted; "
        "use ssl or starttls unless the server offers neither"
    )
    for name, local in (("v4", "127.0.0.1"), ("named", "localhost"), ("v6", "::1")):
        assert run_cli([*base[:2], name, *base[2:], "--host", local], "pw\n") == 0
        assert "warning" not in capsys.readouterr().err


def test_folders_are_checked_against_the_server(mail_user, project_env, capsys) -> None:
    mail_user.copy("1:*", "Archive")  # creates Archive (INBOX is empty: nothing is copied)
    assert add_account(mail_user, "work", ["--folders", "INBOX,Archiv"]) == 2
    endpoint = f"{mail_user.server.host}:{mail_user.server.imaps_port}"
    one_error(
        capsys,
        f"folder 'Archiv' not found on {endpoint} (folders there: Archive, Sent, Junk, Trash, INBOX): "
        "fix --folders or leave it out to sync all but Junk and Trash",
    )
    assert AccountStore(settings.database_url()).list() == []
    assert add_account(mail_user, "work", ["--folders", "inbox,Archive"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("; login verified; folders found on the server: inbox, Archive\n"), out


# -- item 8: through the commands ----------------------------------------------------------


def test_accounts_list_and_status_escape_a_servers_error(project_env, capsys) -> None:
    assert run_cli(["accounts", "add", "work", "--host", "127.0.0.1", "--username", "me", "--password-stdin",
                    "--no-verify"], "pw\n") == 0  # fmt: skip
    AccountStore(settings.database_url()).record_failure("work", HOSTILE)
    capsys.readouterr()
    assert run_cli(["accounts", "list"]) == 0
    out = capsys.readouterr().out
    assert out == f"work\tme@127.0.0.1:993\tssl\tfailing (1 in a row: {HOSTILE_ESCAPED})\n"
    assert run_cli(["status"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert f"  work\tme@127.0.0.1:993\tfailing (1 in a row: {HOSTILE_ESCAPED})\t0 messages" in out
    assert run_cli(["accounts", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["last_error"] == HOSTILE  # JSON: exact


def test_accounts_add_escapes_what_the_server_said(project_env, capsys) -> None:
    hostile_reply = b"{tag} NO [ALERT] \x1b]52;c;cm0gLXJmIH4=\x07 \x1b[2J\xe2\x80\xaeok"
    with ScriptedImapServer([(b"LIST", [hostile_reply])]) as server:
        args = ["accounts", "add", "work", "--host", "127.0.0.1", "--port", str(server.port), "--security", "plain"]
        assert run_cli([*args, "--username", "me", "--password-stdin"], "pw\n") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("email-assets: error: LIST failed on 127.0.0.1:")
    assert err.endswith("NO [ALERT] \\x1b]52;c;cm0gLXJmIH4=\\x07 \\x1b[2J\\u202eok\n"), err
    assert_terminal_safe(err)


HOSTILE_MAIL = message(
    "=?utf-8?q?Invoice=1B]52;c;cm0gLXJmIH4=3D=07_paid=E2=80=AE?=",
    "Please pay.\x1b[2J\x1b]0;pwned\x07 Now.\r\n\r\nThe rebuild is done \u202eexe.txt\u202c today.",
    message_id="<hostile@example.org>",
)


def test_search_and_trace_escape_a_senders_text(mail_user, instance, capsys) -> None:
    mail_user.append([(HOSTILE_MAIL, utc(DAY, 9))])
    assert add_account(mail_user, "work", ["--folders", "INBOX"]) == 0
    assert materialize_partitions(instance, "work", [DAY])[0].success
    capsys.readouterr()
    assert run_cli(["search", "pay the invoice, rebuild done"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "Invoice\\x1b]52;c;cm0gLXJmIH4=\\x07 paid\\u202e" in out and "Please pay.\\x1b[2J" in out
    chunk_id = out.split("[", 1)[1].split("]", 1)[0]
    assert run_cli(["search", "pay the invoice, rebuild done", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)
    assert hit["subject"] == "Invoice\x1b]52;c;cm0gLXJmIH4=\x07 paid\u202e"  # JSON: exact
    assert run_cli(["trace", chunk_id]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "  Subject:    Invoice\\x1b]52;c;cm0gLXJmIH4=\\x07 paid\\u202e\n" in out
    assert "The rebuild is done \\u202eexe.txt\\u202c today." in out
    assert run_cli(["trace", chunk_id, "--json"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert json.loads(out)["parsed"]["subject"] == hit["subject"]
