"""IMAP answers read by type: recorded Dovecot 2.3 replies with unsolicited responses woven in.

Each reply below is what Dovecot 2.3.19 sent for the command (captured with aioimaplib's
debug log), except the lines marked "unsolicited", which RFC 3501 5.5 and 7.4.1 allow a
server to send at any time and which the client must never take for data. The replies
go over a real socket through the real client (`connect`, `ImapSession`).
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from email_assets.errors import AccountError
from email_assets.mail import imap_wire as wire
from email_assets.mail.command_reader import CommandError
from email_assets.mail.imap_connect import ImapEndpoint, connect
from email_assets_tests.scripted_imap import CAPABILITIES, CLOSE, ScriptedImapServer

EXAMINE_INBOX = [
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
    b"* OK [PERMANENTFLAGS ()] Read-only mailbox.",
    b"* 4 EXISTS",
    b"* 0 RECENT",
    b"* OK [UIDVALIDITY 1796172267] UIDs valid",
    b"* OK [UIDNEXT 12] Predicted next UID",
    b"* OK [HIGHESTMODSEQ 31] Highest",
    b"* 3 FETCH (FLAGS (\\Seen))",  # unsolicited
]


def _run(script: list[tuple[bytes, list[bytes]]], body, capabilities: bytes = CAPABILITIES):  # noqa: ANN001
    with ScriptedImapServer(script, capabilities) as server:

        async def session_work():  # noqa: ANN202
            endpoint = ImapEndpoint("127.0.0.1", server.port, "plain", timeout=5)
            async with connect(endpoint, "user", "secret") as session:
                return await body(session)

        return asyncio.run(session_work()), server.commands


def test_uid_search_takes_uids_only_from_search_lines() -> None:
    script = [
        (b"EXAMINE", EXAMINE_INBOX),
        (
            b"UID SEARCH",
            [
                b"* 23 EXISTS",  # unsolicited
                b"* 5 EXPUNGE",  # unsolicited
                b"* SEARCH 2 9 11",
                b"* 7 FETCH (FLAGS (\\Seen))",  # unsolicited
            ],
        ),
    ]

    async def body(session):  # noqa: ANN001, ANN202
        await session.examine("INBOX")
        return await session.search_uids(dt.date(2026, 11, 1), dt.date(2026, 11, 3))

    uids, commands = _run(script, body, CAPABILITIES.replace(b" ESEARCH", b""))
    assert uids == [2, 9, 11]
    assert commands[-2].startswith(b"UID SEARCH SINCE 1-Nov-2026 BEFORE 3-Nov-2026")


def test_esearch_reads_the_set_answering_its_own_tag() -> None:
    script = [
        (b"EXAMINE", EXAMINE_INBOX),
        (
            b"UID SEARCH RETURN (ALL)",
            [
                b"* 12 EXISTS",  # unsolicited
                b'* ESEARCH (TAG "ZZZZ1") UID ALL 900:905',  # another command's answer
                b'* ESEARCH (TAG "{tag}") UID ALL 1:3,7,10:11',
            ],
        ),
    ]

    async def body(session):  # noqa: ANN001, ANN202
        await session.examine("INBOX")
        return await session.all_uids()

    uids, commands = _run(script, body)
    assert uids == [1, 2, 3, 7, 10, 11]
    assert b"UID SEARCH RETURN (ALL) ALL" in commands


def test_esearch_without_matches_is_empty() -> None:
    script = [(b"EXAMINE", EXAMINE_INBOX), (b"UID SEARCH RETURN (ALL)", [b'* ESEARCH (TAG "{tag}") UID'])]

    async def body(session):  # noqa: ANN001, ANN202
        await session.examine("INBOX")
        return await session.search_uids_from(50)

    assert _run(script, body)[0] == []


def test_list_reads_quoted_atom_and_literal_names() -> None:
    script = [
        (
            b"LIST",
            [
                b'* LIST (\\HasNoChildren) "/" INBOX',
                b"* 5 EXISTS",  # unsolicited
                b'* LIST (\\HasNoChildren) "/" "we\\"ird* name"',
                b'* LIST (\\HasNoChildren) "/" {10}\r\nRe* {3}\r\nx',  # a literal name holding "* " and "{3}"
                b'* LIST (\\Noselect \\HasChildren) "/" Archive',
                b'* LIST (\\HasNoChildren \\Junk) "/" Junk',
                b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe"',
                b"* LIST (\\HasNoChildren) NIL Flat",
            ],
        )
    ]

    async def body(session):  # noqa: ANN001, ANN202
        return await session.list_folders(), await session.default_folders()

    (folders, default), _ = _run(script, body)
    names = [name for name, _attributes in folders]
    assert names == ["INBOX", 'we"ird* name', "Re* {3}\r\nx", "Junk", "Entwürfe", "Flat"]
    assert "Junk" not in default and "Archive" not in default and "Re* {3}\r\nx" in default


def test_status_reads_only_the_folder_asked_about() -> None:
    script = [
        (
            b'STATUS "INBOX"',
            [
                b"* STATUS Sent (MESSAGES 99 UIDNEXT 500 UIDVALIDITY 7 HIGHESTMODSEQ 900)",  # unsolicited (NOTIFY)
                b"* 8 EXISTS",  # unsolicited
                b"* STATUS INBOX (MESSAGES 4 UIDNEXT 12 UIDVALIDITY 1796172267 HIGHESTMODSEQ 31)",
            ],
        )
    ]

    async def body(session):  # noqa: ANN001, ANN202
        return await session.status("INBOX")

    status, commands = _run(script, body)
    assert (status.uidvalidity, status.uidnext, status.messages, status.highestmodseq) == (1796172267, 12, 4, 31)
    assert commands[-2] == b'STATUS "INBOX" (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)'


def test_status_without_condstore_does_not_ask_for_modseq() -> None:
    script = [(b'STATUS "INBOX"', [b"* STATUS INBOX (MESSAGES 4 UIDNEXT 12 UIDVALIDITY 3)"])]

    async def body(session):  # noqa: ANN001, ANN202
        return await session.status("INBOX")

    status, commands = _run(script, body, b"IMAP4rev1 LITERAL+ ENABLE")
    assert status.highestmodseq == 0 and commands[-2] == b'STATUS "INBOX" (UIDVALIDITY UIDNEXT MESSAGES)'


def test_examine_ignores_unsolicited_fetch() -> None:
    async def body(session):  # noqa: ANN001, ANN202
        return await session.examine("INBOX")

    status, _ = _run([(b"EXAMINE", EXAMINE_INBOX)], body)
    assert (status.uidvalidity, status.uidnext, status.messages, status.highestmodseq) == (1796172267, 12, 4, 31)


def test_changes_since_reads_flags_and_vanished() -> None:
    script = [
        (b"ENABLE QRESYNC", [b"* ENABLED QRESYNC"]),
        (b"EXAMINE", EXAMINE_INBOX),
        (
            b"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 20 VANISHED)",
            [
                b"* VANISHED (EARLIER) 1:3,7",
                b"* 9 EXISTS",  # unsolicited
                b"* 2 FETCH (UID 9 MODSEQ (30) FLAGS (\\Flagged \\Recent))",
                b"* 3 FETCH (UID 11 FLAGS (\\Seen) MODSEQ (31))",
                b"* 4 FETCH (FLAGS (\\Deleted))",  # unsolicited: no UID, so no data
            ],
        ),
    ]

    async def body(session):  # noqa: ANN001, ANN202
        assert await session.enable_qresync()
        await session.examine("INBOX")
        return await session.changes_since(20)

    changes, _ = _run(script, body)
    assert list(changes.vanished) == [1, 2, 3, 7] and changes.vanished.ranges == ((1, 3), (7, 7))
    assert changes.flags == {9: ("\\Flagged", "\\Recent"), 11: ("\\Seen",)}


def test_message_dates_skip_unsolicited_flag_updates() -> None:
    script = [
        (b"EXAMINE", EXAMINE_INBOX),
        (
            b"UID FETCH 9,11 (UID INTERNALDATE RFC822.SIZE)",
            [
                b'* 2 FETCH (UID 9 INTERNALDATE "20-Nov-2026 10:00:00 +0100" RFC822.SIZE 120)',
                b"* 4 FETCH (UID 12 FLAGS (\\Seen) MODSEQ (40))",  # unsolicited, with a UID under QRESYNC
                b"* 3 EXPUNGE",  # unsolicited
                b'* 3 FETCH (UID 11 INTERNALDATE "21-Nov-2026 00:30:00 -0500" RFC822.SIZE 80)',
            ],
        ),
    ]

    async def body(session):  # noqa: ANN001, ANN202
        await session.examine("INBOX")
        return await session.message_dates([9, 11])

    dates, _ = _run(script, body)
    assert [(item.uid, item.internaldate, item.size) for item in dates] == [
        (9, dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC), 120),
        (11, dt.datetime(2026, 11, 21, 5, 30, tzinfo=dt.UTC), 80),
    ]


def test_a_reply_past_its_bounds_fails_the_command_in_one_line() -> None:
    """Unsolicited responses without end during an EXAMINE, or a few huge ones: the command
    fails at the response count or byte bound (here made small), not at its timeout, and
    the connection, with the rest of the reply unread, is dropped."""
    flood = [b"* 3 FETCH (FLAGS (\\Seen))"] * 100
    huge = [b"* OK " + b"x" * 5000] * 3

    async def body(session):  # noqa: ANN001, ANN202
        session.limits = wire.WireLimits(max_responses=50, max_reply_bytes=10_000)
        with pytest.raises(CommandError) as raised:
            await session.examine("INBOX")
        with pytest.raises(CommandError, match="connection lost"):
            await session.status("INBOX")
        return str(raised.value)

    for lines in (EXAMINE_INBOX + flood, huge):
        error, commands = _run([(b'EXAMINE "INBOX"', lines)], body)
        assert error == "EXAMINE answered with a reply over 10000 bytes or 50 responses"
        assert commands[-1] == b'EXAMINE "INBOX"'


def test_a_refused_command_is_one_line() -> None:
    async def body(session):  # noqa: ANN001, ANN202
        return await session.examine("Nope")

    with pytest.raises(AccountError, match=r"^EXAMINE Nope failed on 127.0.0.1:\d+: BAD Error in IMAP command"):
        _run([], body)


def test_uid_sets_round_trip() -> None:
    assert wire.parse_uid_set(b"1:3,7,9:8", 6) == [1, 2, 3, 7, 8, 9]
    uids = [1, 2, 3, 5, 100, 101]
    assert wire.parse_uid_set(wire.uid_set(uids).encode(), 6) == uids
    for bad in (b"1:*", b"0:3", b"1:4294967296", b"1,,2", b"9" * 5000):
        with pytest.raises(wire.WireError):
            wire.parse_uid_ranges(bad)


def test_uid_sets_stay_ranges_until_bounded() -> None:
    """`1:4294967295` is four billion UIDs: kept as one range, refused past the folder's
    message count, clipped below its UIDNEXT, and looked up without being expanded."""
    everything = wire.parse_uid_ranges(b"5,1:4294967295,7")
    assert everything.ranges == ((1, 4294967295),) and len(everything) == 4294967295
    assert 4294967295 in everything and 0 not in everything
    with pytest.raises(wire.WireError, match="names 4294967295 UIDs, more than the 4 the folder can hold"):
        everything.expand(4)
    assert everything.below(12).ranges == ((1, 11),)
    assert list(wire.parse_uid_ranges(b"9:7,2,3").below(9)) == [2, 3, 7, 8]
    answer = [wire.Untagged(b'ESEARCH (TAG "A1") UID ALL 1:4294967295')]
    with pytest.raises(wire.WireError, match="SEARCH answer names 4294967295 UIDs"):
        wire.search_uids(answer, "A1", most=4)
    vanished = wire.vanished_uids([wire.Untagged(b"VANISHED (EARLIER) 1:4294967295")], uidnext=12)
    assert vanished.ranges == ((1, 11),)


def test_malformed_internaldates_are_value_errors_in_one_line() -> None:
    assert wire.parse_internaldate(b" 1-Nov-2026 10:00:00 +0100") == dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
    for bad in (b"yesterday", b"31-Feb-2026 10:00:00 +0000", b"01-Foo-2026 10:00:00 +0000", b"01-Jan-2026 25:00:00"):
        with pytest.raises(ValueError, match="malformed INTERNALDATE"):
            wire.parse_internaldate(bad)
    item = wire.parse_fetch_response(b'(UID 7 INTERNALDATE "32-Nov-2026 10:00:00 +0000" RFC822.SIZE 3)')
    assert item is not None and "internaldate" not in item
    assert item["internaldate_error"] == "32-Nov-2026 10:00:00 +0000"
    assert wire.parse_fetch_response(b"(UID " + b"9" * 5000 + b" FLAGS ())") is None  # no 5,000-digit int()


def test_untagged_kinds() -> None:
    assert wire.Untagged(b"23 EXISTS").kind == "EXISTS" and wire.Untagged(b"23 EXISTS").number == 23
    assert wire.Untagged(b"SEARCH 1 2").kind == "SEARCH" and wire.Untagged(b"SEARCH 1 2").rest == b"1 2"
    assert wire.Untagged(b"7 FETCH (UID 9)").rest == b"(UID 9)"
    assert wire.search_uids([wire.Untagged(b"SEARCH 2 5 (MODSEQ 917)")], most=2) == [2, 5]


def test_a_server_gone_mid_answer_fails_the_sync_in_one_line(tmp_path) -> None:
    """Half-way through a run's SEARCH the server goes away: a one-line AccountError, no traceback
    of the reader, nothing stored, and the slot given back."""
    from email_assets.pipeline import sync_account_days
    from email_assets.storage.accounts import Account
    from email_assets.storage.connection_slots import ConnectionSlots
    from email_assets.storage.messages import MessageStore
    from email_assets.storage.tables import message_locations

    script = [
        (b"LIST", [b'* LIST (\\HasNoChildren) "/" INBOX']),
        (b"EXAMINE", EXAMINE_INBOX),
        (b"UID SEARCH", [b"* 5 EXISTS", CLOSE]),
    ]
    store = MessageStore(f"sqlite:///{tmp_path / 'gone.sqlite'}")
    with ScriptedImapServer(script) as server:
        account = Account("work", "127.0.0.1", server.port, "user", "plain", [], 1, None, b"")
        with pytest.raises(AccountError, match=r"^IMAP session with 127\.0\.0\.1:\d+ failed: connection lost"):
            sync_account_days(account, "secret", store, [dt.date(2026, 11, 20)], None)
    assert store.count(message_locations, "work", "2026-11-20") == 0
    assert ConnectionSlots(store.url).try_acquire("work", 1, "next") == 0  # the one slot is free again
