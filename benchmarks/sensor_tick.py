"""`make bench`: the sensor's tick for 100 accounts, and the no-QRESYNC fallback at 100,000 messages.

Tick: 100 Dovecot users with 100 messages each (10,000 in all, over 30 days, INBOX plus the
auto-created Sent), every account synced once, then, interleaved `--repeat` times, the
sensor evaluated as the daemon evaluates it (`build_sensor_context` on the instance):
  * ours, no change:   concurrent polling (EMAIL_ASSETS_SENSOR_CONCURRENCY, default 16)
  * ours, sequential:  the same with concurrency 1 (how the sensor polled before)
  * imaplib floor:     stdlib imaplib, one account after another: login, STATUS of each
                       folder, logout (the least any sequential STATUS poll can cost)
  * ours, 10 changed:  after an expunge, a flag change and a new message on 10 accounts
Target (issue 10): the no-change tick < 5 s on 2 cores.

Fallback: one folder of 100,000 small messages, synced, on a Dovecot offering QRESYNC and
on one advertising neither CONDSTORE nor QRESYNC, then `detect_changes` timed for:
  * QRESYNC:            one expunge and one flag change, found by CHANGEDSINCE ... VANISHED
  * count + UID diff:   one expunge without QRESYNC: MESSAGES falls short, so UID SEARCH ALL
                        (ESEARCH) is diffed against the stored UIDs
  * flag sweep:         without CONDSTORE, every flag of the folder read and compared
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import imaplib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

USERS = 100
PER_USER = 100
DAYS = 30
START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
PLAIN_CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT UNSELECT CHILDREN NAMESPACE UIDPLUS "
    "LIST-EXTENDED I18NLEVEL=1 ESEARCH SEARCHRES WITHIN LIST-STATUS BINARY MOVE LITERAL+ SPECIAL-USE"
)


def write_maildir(maildir: Path, count: int, seed: int) -> None:
    """`count` small messages spread over DAYS days (file mtime = INTERNALDATE)."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        when = START + dt.timedelta(seconds=(index * 7919 + seed * 104729) % (DAYS * 86400))
        raw = (
            f"From: Sender {index % 40} <s{index % 40}@example.org>\r\nTo: u@example.test\r\n"
            f"Subject: status report {seed}-{index}\r\nMessage-ID: <t-{seed}-{index}@example.org>\r\n"
            f"Date: {when:%a, %d %b %Y %H:%M:%S +0000}\r\n\r\nReport {index} of account {seed}.\r\n"
        ).encode()
        path = maildir / "cur" / f"{int(when.timestamp())}.M{index}P{seed}.bench,S={len(raw)}:2,S"
        path.write_bytes(raw)
        os.utime(path, (when.timestamp(), when.timestamp()))


def give_to_mail_owner(root: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    nobody = pwd.getpwnam("nobody")
    for directory, dirs, files in os.walk(root / "home"):
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(directory, name), nobody.pw_uid, nobody.pw_gid)


def imaplib_floor(server, users: dict[str, str]) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for user, password in users.items():
        client = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=server.ssl_context())
        client.login(user, password)
        for folder in ("INBOX", "Sent"):
            client.status(folder, "(UIDVALIDITY UIDNEXT MESSAGES)")
        client.logout()
    return time.perf_counter() - started


def add_accounts(server, users: dict[str, str]) -> None:  # noqa: ANN001
    from email_assets import cli

    for user, password in users.items():
        args = ["accounts", "add", user, "--host", server.host, "--port", str(server.imaps_port)]
        args += ["--username", user, "--password-stdin", "--ca-file", str(server.ca_file), "--no-verify"]
        previous, sys.stdin = sys.stdin, io.StringIO(password + "\n")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli.main(args) == 0
        finally:
            sys.stdin = previous


def tick_benchmark(workdir: Path, repeat: int) -> dict[str, list[float]]:
    import dagster as dg

    from email_assets import pipeline, settings
    from email_assets.definitions import RESOURCES
    from email_assets.defs.sensors import mailbox_highwater_sensor
    from email_assets.demo.dovecot import make_server
    from email_assets.storage.accounts import AccountStore
    from email_assets.storage.messages import MessageStore

    users = {f"u{number:03d}": f"pw-{number:03d}-tick" for number in range(USERS)}
    server = make_server(users, workdir / "dovecot")
    for number, user in enumerate(users):
        write_maildir(server.maildir(user), PER_USER, number)
    server.start()
    give_to_mail_owner(server.root)
    times: dict[str, list[float]] = {"no change": [], "sequential": [], "imaplib floor": [], "10 changed": []}
    try:
        add_accounts(server, users)
        store = MessageStore(settings.database_url())
        days = [(START + dt.timedelta(days=n)).date() for n in range(DAYS + 1)]
        started = time.perf_counter()
        for account in AccountStore(settings.database_url()).list():
            pipeline.sync_account_days(account, users[account.name], store, days, None)
        print(f"setup: {USERS} accounts, {USERS * PER_USER:,} messages synced in {time.perf_counter() - started:.0f} s")
        with dg.DagsterInstance.get() as instance:

            def tick(cursor: str | None) -> tuple[float, dg.SensorResult]:
                context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=RESOURCES)
                began = time.perf_counter()
                result = mailbox_highwater_sensor(context)
                return time.perf_counter() - began, result

            _, first = tick(None)
            cursor = first.cursor
            _, settled = tick(cursor)
            assert not settled.run_requests, [r.run_key for r in settled.run_requests]
            cursor = settled.cursor
            names = sorted(users)
            for round_number in range(repeat):
                seconds, quiet = tick(cursor)
                assert not quiet.run_requests and not quiet.skip_reason
                times["no change"].append(seconds)
                os.environ["EMAIL_ASSETS_SENSOR_CONCURRENCY"] = "1"
                seconds, _ = tick(cursor)
                times["sequential"].append(seconds)
                del os.environ["EMAIL_ASSETS_SENSOR_CONCURRENCY"]
                times["imaplib floor"].append(imaplib_floor(server, users))
                changed = names[round_number * 10 : round_number * 10 + 10]
                for user in changed:
                    client = server.connect(user)
                    client.select("INBOX")
                    client.uid("STORE", str(2 + round_number), "+FLAGS", "(\\Flagged)")
                    client.uid("STORE", str(10 + round_number), "+FLAGS", "(\\Deleted)")
                    client.expunge()
                    client.logout()
                    server.append(user, [(b"Subject: new\r\n\r\nnew mail\r\n", START + dt.timedelta(days=3))])
                seconds, result = tick(cursor)
                times["10 changed"].append(seconds)
                asked = {request.tags["email_assets/account"] for request in result.run_requests}
                assert asked == set(changed), (asked, changed)
                cursor = result.cursor
    finally:
        server.stop()
    return times


def fallback_benchmark(workdir: Path, messages: int, repeat: int) -> dict[str, list[float]]:
    from email_assets import pipeline
    from email_assets.demo.dovecot import make_server
    from email_assets.mail.changes import detect_changes
    from email_assets.mail.imap_connect import ImapEndpoint, connect
    from email_assets.storage.accounts import Account
    from email_assets.storage.messages import MessageStore
    from email_assets.storage.tables import message_locations

    times: dict[str, list[float]] = {"QRESYNC": [], "count + UID diff": [], "flag sweep": []}
    servers = {}
    for kind, capabilities in (("qresync", None), ("plain", PLAIN_CAPABILITIES)):
        server = make_server({"big": "pw-big-folder"}, workdir / f"dovecot-{kind}")
        server.capabilities = capabilities
        write_maildir(server.maildir("big"), messages, 7)
        server.start()
        give_to_mail_owner(server.root)
        servers[kind] = server
    try:
        stores, marks = {}, {}
        days = [(START + dt.timedelta(days=n)).date() for n in range(DAYS + 1)]
        for kind, server in servers.items():
            store = MessageStore(f"sqlite:///{workdir / f'{kind}.sqlite'}")
            account = Account(
                kind, server.host, server.imaps_port, "big", "ssl", ["INBOX"], 2, server.ca_file.read_text(), b""
            )
            started = time.perf_counter()
            pipeline.sync_account_days(account, "pw-big-folder", store, days, None)
            print(
                f"setup: {messages:,} messages synced from the {kind} server in {time.perf_counter() - started:.0f} s"
            )
            stores[kind] = store

        async def detect(kind: str, previous: dict, sweep_seconds: float = 3600) -> tuple[float, object]:
            server = servers[kind]
            endpoint = ImapEndpoint(server.host, server.imaps_port, "ssl", server.ca_file.read_text(), 60)
            async with connect(endpoint, "big", "pw-big-folder") as session:
                began = time.perf_counter()
                changes = await detect_changes(
                    session, kind, ["INBOX"], previous, stores[kind], time.time(), sweep_seconds
                )
                return time.perf_counter() - began, changes

        for kind in servers:
            _, changes = asyncio.run(detect(kind, {}))
            marks[kind] = changes.marks
        uid = 100
        for _ in range(repeat):
            uid += 1
            client = servers["qresync"].connect("big")
            client.select("INBOX")
            client.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")
            client.uid("STORE", str(uid + messages // 2), "+FLAGS", "(\\Deleted)")
            client.expunge()
            client.logout()
            seconds, changes = asyncio.run(detect("qresync", marks["qresync"]))
            assert changes.expunged == 1 and changes.flag_changes == 1, changes.describe()
            times["QRESYNC"].append(seconds)
            marks["qresync"] = changes.marks

            client = servers["plain"].connect("big")
            client.select("INBOX")
            client.uid("STORE", str(uid + messages // 2), "+FLAGS", "(\\Deleted)")
            client.expunge()
            client.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")
            client.logout()
            seconds, changes = asyncio.run(detect("plain", marks["plain"]))
            assert changes.expunged == 1 and changes.flag_changes == 0, changes.describe()
            times["count + UID diff"].append(seconds)
            seconds, swept = asyncio.run(detect("plain", changes.marks, sweep_seconds=0))
            assert swept.flag_changes == 1, swept.describe()
            times["flag sweep"].append(seconds)
            marks["plain"] = swept.marks
            # What the run would do: the store forgets the expunged copy and learns the flag.
            uidvalidity = changes.marks["INBOX"]["uidvalidity"]
            stores["plain"].set_flags("plain", "INBOX", uidvalidity, {uid: "\\Flagged \\Seen"})
            with stores["plain"].engine.begin() as connection:
                connection.execute(sa.delete(message_locations).where(message_locations.c.uid == uid + messages // 2))
    finally:
        for server in servers.values():
            server.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fallback-messages", type=int, default=100_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="email-assets-tick-"))
    workdir.chmod(0o755)  # Dovecot's unprivileged auth and mail processes must reach the server root
    home = workdir / "dagster_home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", home / "dagster.yaml")
    os.environ.update(
        DAGSTER_HOME=str(home),
        EMAIL_ASSETS_DATA_DIR=str(workdir / "data"),
        EMAIL_ASSETS_RETENTION_DAYS="0",
        EMAIL_ASSETS_START_DATE="2026-09-01",
    )
    from email_assets.credentials import generate_key

    os.environ["EMAIL_ASSETS_FERNET_KEYS"] = generate_key()
    try:
        ticks = tick_benchmark(workdir, args.repeat)
        fallback = fallback_benchmark(workdir, args.fallback_messages, args.repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in {**ticks, **fallback}.items()}
    print(f"\nsensor tick, {USERS} accounts, {USERS * PER_USER:,} messages (median of {args.repeat} interleaved):")
    quiet = medians["no change"]
    print(f"  ours, no change (16 at once)  {quiet:7.2f} s   target < 5 s")
    for label, name in (("ours, sequential", "sequential"), ("imaplib floor, sequential", "imaplib floor")):
        print(f"  {label:28}  {medians[name]:7.2f} s   {medians[name] / quiet:.1f}x ours")
    print(f"  {'ours, 10 accounts changed':28}  {medians['10 changed']:7.2f} s")
    print(f"\none folder of {args.fallback_messages:,} messages, one change found by:")
    for name in ("QRESYNC", "count + UID diff", "flag sweep"):
        print(f"  {name:28}  {medians[name]:7.2f} s   {medians[name] / medians['QRESYNC']:.1f}x QRESYNC")
    print(json.dumps({name: round(value, 3) for name, value in medians.items()}))


if __name__ == "__main__":
    main()
