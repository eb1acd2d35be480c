"""Server message ids (Gmail X-GM-EXT-1, RFC 8474 OBJECTID): a message known by its id is
located, not downloaded again, across folders and across a UIDVALIDITY change.

Dovecot 2.3 speaks neither dialect; `ServerIdsProxy` gives it each one on top of its own
per-message GUID, so the mailbox, the UIDs and the bodies are a real Dovecot's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest

from email_assets.errors import AccountError
from email_assets.pipeline import parse_partition, sync_account_days
from email_assets.storage.tables import message_locations, parsed_emails, raw_messages
from email_assets_tests.server_ids_proxy import ServerIdsProxy, dialect_ids
from email_assets_tests.tcp_proxy import CuttingProxy
from email_assets_tests.test_imap_sync import DAY, account_for, batch, rows, store  # noqa: F401 - fixture


@pytest.fixture(params=["gmail", "objectid"])
def proxy(request: pytest.FixtureRequest, mail_user) -> Iterator[ServerIdsProxy]:
    proxy = ServerIdsProxy(mail_user.server.imap_port, request.param)
    yield proxy
    proxy.close()


def sync_through(proxy: ServerIdsProxy, mail_user, store):  # noqa: F811 - the fixture
    account = account_for(mail_user, port=proxy.port, security="plain", ca=False)
    return sync_account_days(account, mail_user.password, store, [DAY], run_id="test-run")


def expected_ids(proxy: ServerIdsProxy, mail_user, folder: str = "INBOX") -> dict[str, tuple[str, str]]:
    """Message sha256 -> (message id, thread id), from Dovecot's GUIDs, asked without the proxy."""
    client = mail_user.server.connect(mail_user.name)
    try:
        client.select(f'"{folder}"', readonly=True)
        _, data = client.uid("FETCH", "1:*", "(X-GUID BODY.PEEK[])")
    finally:
        client.logout()
    ids = {}
    for item in data:
        if isinstance(item, tuple):
            guid = re.search(rb"X-GUID ([^ )]+)", item[0]).group(1)
            ids[hashlib.sha256(item[1]).hexdigest()] = dialect_ids(proxy.dialect, guid)
    return ids


def test_message_in_two_folders_is_downloaded_once(proxy, mail_user, store) -> None:  # noqa: F811
    mail_user.append(batch(3, DAY))
    mail_user.copy("1:2", "Label")

    report = sync_through(proxy, mail_user, store)

    assert proxy.bodies_served == 3
    assert report.fetched[DAY.isoformat()] == 3 and report.linked[DAY.isoformat()] == 2
    stored = rows(store, raw_messages)
    ids = expected_ids(proxy, mail_user)
    assert {row["sha256"]: (row["server_id"], row["server_thread_id"]) for row in stored} == ids
    locations = rows(store, message_locations)
    assert sorted((row["folder"], row["uid"]) for row in locations) == [
        ("INBOX", 1),
        ("INBOX", 2),
        ("INBOX", 3),
        ("Label", 1),
        ("Label", 2),
    ]
    assert len({row["message_key"] for row in locations}) == 3

    again = sync_through(proxy, mail_user, store)
    assert proxy.bodies_served == 3 and again.fetched[DAY.isoformat()] == 0 and again.linked[DAY.isoformat()] == 0


def rewrite_uidvalidity(mail_user) -> None:
    """What a server restore or mailbox rebuild does: same messages, new UIDVALIDITY."""
    maildir = mail_user.server.maildir(mail_user.name)
    uidlist = maildir / "dovecot-uidlist"
    header, rest = uidlist.read_text().split("\n", 1)
    uidlist.write_text(re.sub(r" V(\d+)", lambda match: f" V{int(match.group(1)) + 1000}", header) + "\n" + rest)
    for index in maildir.glob("dovecot.index*"):
        index.unlink()


def test_uidvalidity_change_relinks_without_downloading(proxy, mail_user, store) -> None:  # noqa: F811
    mail_user.append(batch(4, DAY))
    sync_through(proxy, mail_user, store)
    before = {row["message_key"]: row["raw"] for row in rows(store, raw_messages)}
    old_validity = {row["uidvalidity"] for row in rows(store, message_locations)}
    rewrite_uidvalidity(mail_user)

    report = sync_through(proxy, mail_user, store)

    assert proxy.bodies_served == 4
    assert report.fetched[DAY.isoformat()] == 0 and report.linked[DAY.isoformat()] == 4
    assert {row["message_key"]: row["raw"] for row in rows(store, raw_messages)} == before
    locations = rows(store, message_locations)
    assert len(locations) == 4 and {row["uidvalidity"] for row in locations}.isdisjoint(old_validity)

    parse_partition(store, "work", DAY.isoformat(), None)
    ids = expected_ids(proxy, mail_user)
    raw_sha = {row["message_key"]: row["sha256"] for row in rows(store, raw_messages)}
    threads = {row["message_key"]: row["thread_id"] for row in rows(store, parsed_emails)}
    assert threads == {key: ids[sha][1] for key, sha in raw_sha.items()}


def test_messages_stored_without_ids_gain_them_when_met_again(proxy, mail_user, store) -> None:  # noqa: F811
    mail_user.append(batch(2, DAY))
    sync_account_days(account_for(mail_user), mail_user.password, store, [DAY], run_id="no-ids")  # plain Dovecot
    assert {row["server_id"] for row in rows(store, raw_messages)} == {None}
    mail_user.copy("1:2", "Label")

    sync_through(proxy, mail_user, store)  # Label's copies: ids not known yet, so downloaded

    assert proxy.bodies_served == 2
    ids = expected_ids(proxy, mail_user)
    assert {row["sha256"]: (row["server_id"], row["server_thread_id"]) for row in rows(store, raw_messages)} == ids
    rewrite_uidvalidity(mail_user)
    report = sync_through(proxy, mail_user, store)
    assert proxy.bodies_served == 2 and report.linked[DAY.isoformat()] == 2


def test_connection_cut_mid_sync_then_next_run_links_the_rest(proxy, mail_user, store) -> None:  # noqa: F811
    messages = batch(60, DAY, size=3000)
    mail_user.append(messages)
    mail_user.copy("1:60", "Label")
    cutter = CuttingProxy(proxy.port, cut_after=100_000)  # client -> cut -> id dialect -> Dovecot
    try:
        with pytest.raises(AccountError, match="IMAP session with"):
            account = account_for(mail_user, port=cutter.port, security="plain", ca=False)
            sync_account_days(account, mail_user.password, store, [DAY], run_id="cut", batch_size=10)
    finally:
        cutter.close()
    partial = rows(store, raw_messages)
    assert 0 < len(partial) < 60  # whole batches committed before the cut, with their ids
    assert all(hashlib.sha256(row["raw"]).hexdigest() == row["sha256"] and row["server_id"] for row in partial)
    served_before = proxy.bodies_served

    report = sync_through(proxy, mail_user, store)

    assert proxy.bodies_served - served_before == 60 - len(partial)  # only what was missing
    assert report.linked[DAY.isoformat()] == 60  # every Label copy, without its body
    assert sorted(row["raw"] for row in rows(store, raw_messages)) == sorted(raw for raw, _ in messages)
    locations = rows(store, message_locations)
    assert len(locations) == 120 and len({row["message_key"] for row in locations}) == 60
