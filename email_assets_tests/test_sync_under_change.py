"""A sync while another client appends and expunges in the same folder, on a real Dovecot.

Dovecot tells the syncing session about those changes with unsolicited EXISTS, EXPUNGE
(or VANISHED) and FETCH responses in the middle of its SEARCH and FETCH answers; none may
become data. What the sync stores must be bytes the server really served under that UID,
each once, and the next sync must leave exactly what the server holds.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import threading
from pathlib import Path

import pytest

from email_assets.mail import imap_session
from email_assets.mail.command_reader import Reply
from email_assets.mail.imap_session import FolderStatus, ImapSession
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import message_locations, raw_messages
from email_assets_tests.conftest import message, utc
from email_assets_tests.test_imap_sync import rows, sync

DAY = dt.date(2026, 11, 20)


@pytest.fixture
def store(tmp_path: Path) -> MessageStore:
    return MessageStore(f"sqlite:///{tmp_path / 'sync.sqlite'}")


def test_a_sync_while_mail_is_appended_and_expunged(mail_user, store, monkeypatch) -> None:
    mail_user.append([(message(f"before {i}", f"body {i} " + "y" * 2000), utc(DAY, 8, i % 60)) for i in range(1500)])
    done, examined, changed = threading.Event(), threading.Event(), threading.Event()
    changes = {"appended": 0, "expunged": 0}
    unsolicited: collections.Counter[tuple[str, str]] = collections.Counter()

    # The first change lands right after the sync's EXAMINE of INBOX, so Dovecot reports it
    # in the middle of the next command's answer, the SEARCH; later ones fall anywhere.
    examine, run_command = ImapSession.examine, imap_session.run_command

    async def examine_then_wait(self: ImapSession, folder: str) -> FolderStatus:
        status = await examine(self, folder)
        if folder == "INBOX" and not examined.is_set():
            examined.set()
            await asyncio.to_thread(changed.wait, 10)
        return status

    async def spying(protocol, command: str, *args: object) -> Reply:  # noqa: ANN001 - run_command's own
        reply = await run_command(protocol, command, *args)
        verb = " ".join(command.split()[:2]) if command.startswith("UID ") else command.split()[0]
        for response in reply.untagged:
            if response.kind in {"EXISTS", "EXPUNGE", "VANISHED"} or (response.kind == "FETCH" and verb != "UID FETCH"):
                unsolicited[(verb, response.kind)] += 1
        return reply

    monkeypatch.setattr(ImapSession, "examine", examine_then_wait)
    monkeypatch.setattr(imap_session, "run_command", spying)

    def meddle() -> None:
        client = mail_user.server.connect(mail_user.name)
        client.select("INBOX")
        uid = 1
        examined.wait(30)
        while not done.is_set():
            client.append("INBOX", "", utc(DAY, 9), message(f"during {uid}", f"late {uid}"))
            changes["appended"] += 1
            client.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
            client.expunge()
            client.uid("STORE", str(uid + 700), "+FLAGS", "(\\Flagged)")
            changes["expunged"] += 1
            changed.set()
            uid += 3
        client.logout()

    meddler = threading.Thread(target=meddle)
    meddler.start()
    try:
        report = sync(mail_user, store, [DAY])
    finally:
        done.set()
        meddler.join()
    assert changes["expunged"] >= 1, changes  # the server changed while the sync ran
    assert unsolicited[("UID SEARCH", "EXPUNGE")] >= 1 and unsolicited[("UID SEARCH", "EXISTS")] >= 1, unsolicited
    assert sum(report.failures.values()) == 0

    def served() -> dict[int, bytes]:
        with mail_user.session("INBOX", readonly=True) as client:
            _, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        found = {}
        for item in data:
            if isinstance(item, tuple):
                found[int(item[0].split(b"UID ")[1].split()[0])] = item[1]
        return found

    def stored() -> dict[int, bytes]:
        raw = {row["message_key"]: row["raw"] for row in rows(store, raw_messages)}
        locations = rows(store, message_locations)
        assert len({row["uid"] for row in locations}) == len(locations)  # each UID once
        return {row["uid"]: raw[row["message_key"]] for row in locations}

    on_server, kept = served(), stored()
    highest = max(on_server)
    # Every stored UID is a real one, stored with the bytes the server served under it
    # (or, where it was expunged meanwhile, the next sync removes it).
    assert all(uid <= highest for uid in kept)
    assert all(kept[uid] == body for uid, body in on_server.items() if uid in kept)
    sync(mail_user, store, [DAY])
    assert stored() == served()
    assert len(rows(store, raw_messages)) == len(on_server)
