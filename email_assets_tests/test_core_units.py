"""Pure functions of the core: no server needed."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from email_assets.credentials import SecretBox, generate_key
from email_assets.errors import ConfigurationError
from email_assets.mail.chunking import cap, chunk_text, context_line, regex_token_offsets
from email_assets.mail.imap_wire import imap_date, parse_fetch_response, parse_internaldate, uid_set
from email_assets.mail.keys import chunk_id, content_sha256, message_key
from email_assets.mail.mailbox_names import decode_mailbox_name, encode_mailbox_name
from email_assets.settings import RetentionWindow


def test_modified_utf7_mailbox_names_round_trip() -> None:
    assert encode_mailbox_name("Entwürfe") == "Entw&APw-rfe"
    assert encode_mailbox_name("R&D") == "R&-D"
    assert encode_mailbox_name("日本語") == "&ZeVnLIqe-"
    for name in ("INBOX", "Entwürfe", "R&D", "日本語/子", "Éléments envoyés"):
        assert decode_mailbox_name(encode_mailbox_name(name)) == name


def test_uid_set_compacts_ranges() -> None:
    assert uid_set([7, 1, 2, 3, 8, 10]) == "1:3,7:8,10"
    with pytest.raises(ValueError):
        uid_set([])


def test_imap_dates() -> None:
    assert imap_date(dt.date(2026, 3, 5)) == "5-Mar-2026"
    assert parse_internaldate(b"20-Nov-2026 23:30:00 -0200") == dt.datetime(2026, 11, 21, 1, 30, tzinfo=dt.UTC)


def test_parse_fetch_response_reads_items_on_both_sides_of_the_literal() -> None:
    text = b'1 FETCH (UID 5 INTERNALDATE "20-Nov-2026 10:00:00 +0000" RFC822.SIZE 4 BODY[]  FLAGS (\\Seen))'
    assert parse_fetch_response(b"2 FETCH (FLAGS (\\Deleted))") is None  # unsolicited update: no UID
    item = parse_fetch_response(text, b"abcd")
    assert item == {
        "uid": 5,
        "body": b"abcd",
        "size": 4,
        "internaldate": dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC),
        "flags": ("\\Seen",),
    }


def test_keys_are_deterministic_and_scoped() -> None:
    sha = content_sha256(b"message")
    assert message_key("work", sha) == message_key("work", sha)
    assert message_key("work", sha) != message_key("home", sha)
    key = message_key("work", sha)
    assert chunk_id(key, "m1", "text") == chunk_id(key, "m1", "text")
    assert chunk_id(key, "m1", "text") != chunk_id(key, "m2", "text")


def test_secret_box_rotation_and_fail_fast_errors() -> None:
    old, new = generate_key(), generate_key()
    token = SecretBox([old]).encrypt("hunter2")
    both = SecretBox.from_keys_string(f"{new}, {old}")
    assert both.decrypt(token) == "hunter2"
    rotated = both.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "hunter2"
    unset = SecretBox.from_keys_string("")  # fails at first use, where it can say which key will do
    with pytest.raises(ConfigurationError, match="EMAIL_ASSETS_FERNET_KEYS is not set.*keys generate"):
        unset.encrypt("hunter2")
    with pytest.raises(ConfigurationError, match="EMAIL_ASSETS_FERNET_KEYS is not set.*key that encrypted it"):
        unset.decrypt(token, "work")
    with pytest.raises(ConfigurationError, match="key #2 is not a valid Fernet key"):
        SecretBox.from_keys_string(f"{new},not-a-key")
    with pytest.raises(ConfigurationError) as error:
        SecretBox([new]).decrypt(SecretBox([old]).encrypt("hunter2"))
    assert "hunter2" not in str(error.value)


def test_chunks_follow_paragraphs_and_sentences_within_the_budget() -> None:
    paragraphs = [" ".join(f"p{p}w{i}" for i in range(30)) + "." for p in range(6)]  # 31 tokens each
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, regex_token_offsets, max_tokens=100)
    assert [chunk.text for chunk in chunks] == ["\n\n".join(paragraphs[:3]), "\n\n".join(paragraphs[3:])]
    assert [chunk.token_count for chunk in chunks] == [93, 93]
    long_paragraph = " ".join(f"Sentence {i} has some words in it." for i in range(40))  # 8 tokens each
    pieces = chunk_text(long_paragraph, regex_token_offsets, max_tokens=60)
    assert all(piece.token_count <= 60 for piece in pieces)
    assert all(piece.text.startswith("Sentence ") and piece.text.endswith("in it.") for piece in pieces)
    assert " ".join(piece.text for piece in pieces) == long_paragraph
    one_sentence = " ".join(f"word{i}" for i in range(1000))  # no boundary at all: token windows
    windows = chunk_text(one_sentence, regex_token_offsets, max_tokens=100)
    assert [window.token_count for window in windows] == [100] * 10
    assert windows[0].text.startswith("word0 ") and windows[-1].text.endswith("word999")
    assert [c.index for c in windows] == list(range(len(windows)))
    assert chunk_text("", regex_token_offsets) == []


def test_context_line_opens_every_chunk_and_headers_are_capped() -> None:
    subject = "S" * 1_000_000  # a hostile 1 MB Subject
    context = context_line(subject, "Ana <ana@example.org>", "2026-11-20T10:00:00+00:00")
    assert len(context) < 200 and context.endswith(" | Ana <ana@example.org> | 2026-11-20")
    text = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(5))
    chunks = chunk_text(text, regex_token_offsets, max_tokens=100, context=context)
    assert len(chunks) == 5  # the header costs tokens, but never multiplies the chunks by its size
    assert all(chunk.text.startswith(context + "\nParagraph ") and chunk.token_count <= 100 for chunk in chunks)
    assert cap("a\nb   c") == "a b c" and cap(None) == ""


def test_local_tokenizer_offsets_cut_real_text() -> None:
    from email_assets.embedding import LocalEmbedder

    embedder = LocalEmbedder()
    text = "Réunion à 10h: le serveur de base de données est tombé. " * 60
    chunks = chunk_text(text, embedder.token_offsets, embedder.max_tokens)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.token_count <= embedder.max_tokens
        assert chunk.text in text


def test_retention_window() -> None:
    today = dt.date(2026, 11, 25)
    window = RetentionWindow(30)
    assert window.oldest_kept(today) == dt.date(2026, 10, 27)
    assert window.keeps(dt.date(2026, 10, 27), today) and not window.keeps(dt.date(2026, 10, 26), today)
    assert RetentionWindow(0).keeps(dt.date(1990, 1, 1), today)


def test_core_modules_do_not_import_dagster() -> None:
    core = [
        "email_assets.mail.imap_wire",
        "email_assets.mail.imap_session",
        "email_assets.mail.imap_connect",
        "email_assets.mail.command_reader",
        "email_assets.account_access",
        "email_assets.mail.sync",
        "email_assets.mail.parsing",
        "email_assets.mail.cleaning",
        "email_assets.mail.chunking",
        "email_assets.mail.changes",
        "email_assets.polling",
        "email_assets.pipeline",
        "email_assets.search",
        "email_assets.trace",
        "email_assets.storage.messages",
        "email_assets.storage.raw_store",
        "email_assets.storage.locations",
        "email_assets.storage.accounts",
        "email_assets.storage.vectors",
        "email_assets.embedding",
    ]
    code = f"import sys\nfor m in {core!r}: __import__(m)\nprint('dagster' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_stored_datetimes_come_back_aware_utc_whatever_the_local_zone(tmp_path, monkeypatch) -> None:
    import time

    import sqlalchemy as sa

    from email_assets.mail.records import FetchedMessage
    from email_assets.storage.messages import MessageStore
    from email_assets.storage.tables import raw_messages

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        store = MessageStore(f"sqlite:///{tmp_path / 'tz.sqlite'}")
        moment = dt.datetime(2026, 11, 20, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))  # 01:30 UTC, 21st
        store.save_fetched("a", [FetchedMessage("INBOX", 1, 1, moment, (), 3, b"abc")], None)
        with store.engine.connect() as connection:
            stored = connection.execute(sa.select(raw_messages.c.internaldate, raw_messages.c.day)).one()
        assert stored.internaldate == moment and stored.internaldate.tzinfo == dt.UTC
        assert stored.day == "2026-11-21"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_library_error_text_loses_the_secret() -> None:
    """aioimaplib's Abort for an unexpected reply quotes the pending command, LOGIN included."""
    import asyncio

    import aioimaplib

    from email_assets.mail.imap_connect import without_secret

    loop = asyncio.new_event_loop()
    try:
        command = aioimaplib.Command("LOGIN", "A1", "ana", '"hunter2-secret"', loop=loop)
    finally:
        loop.close()
    error = aioimaplib.Abort(f"unexpected tagged response with pending sync command ({command}) response: x")
    assert "hunter2-secret" in str(error)
    assert "hunter2-secret" not in without_secret(str(error), "hunter2-secret")


def test_sqlite_fast_upsert_stores_what_sqlalchemy_would(tmp_path) -> None:
    import sqlalchemy as sa

    from email_assets.storage.database import engine_for, upsert
    from email_assets.storage.tables import parsed_emails

    engine = engine_for(f"sqlite:///{tmp_path / 'upsert.sqlite'}")
    row = {
        "message_key": "k1",
        "account": "a",
        "day": "2026-11-20",
        "raw_sha256": "s",
        "subject": "Grüße",
        "to_addresses": [{"name": "Zoë", "address": "z@example.org"}],
        "cc_addresses": [],
        "date": dt.datetime(2026, 11, 20, 23, 30, 1, 250, tzinfo=dt.timezone(dt.timedelta(hours=-2))),
        "date_source": "header",
        "references": ["<a@b>"],
        "attachments": [],
        "defects": [],
        "code_version": "v1",
    }
    reference = {**row, "message_key": "k2"}
    whole_second = {**row, "message_key": "k3", "date": row["date"].replace(microsecond=0)}
    with engine.begin() as connection:
        upsert(connection, parsed_emails, [row, whole_second])
        connection.execute(sa.insert(parsed_emails), [reference, {**whole_second, "message_key": "k4"}])
        upsert(connection, parsed_emails, [{**row, "subject": "ignored"}], update=False)
        stored_text = connection.exec_driver_sql(
            'SELECT message_key, date, to_addresses, "references" FROM parsed_emails ORDER BY message_key'
        ).all()
        [back] = connection.execute(sa.select(parsed_emails).where(parsed_emails.c.message_key == "k1")).mappings()
    fast, reference_text, fast_whole, reference_whole = (stored[1:] for stored in stored_text)
    assert fast == reference_text  # byte-for-byte what SQLAlchemy's own insert writes
    assert fast_whole == reference_whole and fast_whole[0].endswith(":01.000000")  # whole seconds too
    assert {name: back[name] for name in row} == {**row, "date": row["date"].astimezone(dt.UTC)}
    with engine.begin() as connection:
        upsert(connection, parsed_emails, [{**row, "subject": "updated"}])
        assert (
            connection.execute(sa.select(parsed_emails.c.subject).where(parsed_emails.c.message_key == "k1")).scalar()
            == "updated"
        )


def test_parse_fetch_response_reads_gmail_and_rfc8474_ids() -> None:
    gmail = parse_fetch_response(b"3 FETCH (UID 7 X-GM-MSGID 1278455344230334865 X-GM-THRID 1266894439832287888)")
    assert gmail is not None
    assert (gmail["server_id"], gmail["thread_id"]) == ("1278455344230334865", "1266894439832287888")
    objectid = parse_fetch_response(b"3 FETCH (UID 7 EMAILID (M6d99ac3275bb4e) THREADID (T64b478a75b7ea9bd))")
    assert objectid is not None
    assert (objectid["server_id"], objectid["thread_id"]) == ("M6d99ac3275bb4e", "T64b478a75b7ea9bd")
    unthreaded = parse_fetch_response(b"3 FETCH (UID 7 EMAILID (M6d99ac3275bb4e) THREADID NIL)")
    assert unthreaded is not None and "thread_id" not in unthreaded
    malformed = parse_fetch_response(b"3 FETCH (UID 7 X-GM-MSGID abc EMAILID (M bad!))")  # no id: downloaded as usual
    assert malformed is not None and "server_id" not in malformed and malformed["uid"] == 7


def test_database_from_an_earlier_release_gains_the_new_columns(tmp_path) -> None:
    import sqlalchemy as sa

    from email_assets.storage.database import engine_for

    path = tmp_path / "old.sqlite"
    old = sa.create_engine(f"sqlite:///{path}")
    with old.begin() as connection:  # raw_messages as the previous release made it
        connection.exec_driver_sql(
            "CREATE TABLE raw_messages (message_key VARCHAR(64) PRIMARY KEY, account VARCHAR(64) NOT NULL, "
            "day VARCHAR(10) NOT NULL, internaldate DATETIME NOT NULL, size INTEGER NOT NULL, "
            "sha256 VARCHAR(64) NOT NULL, raw BLOB NOT NULL, run_id VARCHAR(64), fetched_at DATETIME NOT NULL)"
        )
        connection.exec_driver_sql(
            "INSERT INTO raw_messages VALUES ('k', 'a', '2026-11-20', '2026-11-20 10:00:00.000000', 1, 's', x'61', "
            "NULL, '2026-11-20 10:00:00.000000')"
        )
    old.dispose()
    engine = engine_for(f"sqlite:///{path}")
    inspector = sa.inspect(engine)
    assert {"server_id", "server_thread_id"} <= {column["name"] for column in inspector.get_columns("raw_messages")}
    assert "ix_raw_messages_server_id" in {index["name"] for index in inspector.get_indexes("raw_messages")}
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT message_key, raw, server_id FROM raw_messages").one() == (
            "k",
            b"a",
            None,
        )


def test_background_checkpoints_move_the_wal_into_the_database(tmp_path) -> None:
    import time

    import sqlalchemy as sa

    from email_assets.storage.database import background_checkpoints, engine_for

    path = tmp_path / "wal.sqlite"
    engine = engine_for(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    empty_size = path.stat().st_size
    with background_checkpoints(engine, every_seconds=0.01), engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")  # only the background thread may checkpoint
        connection.execute(sa.text("INSERT INTO blobs (data) VALUES (:data)"), [{"data": b"x" * 50_000}] * 100)
        connection.commit()
        deadline = time.monotonic() + 10
        while path.stat().st_size < empty_size + 5_000_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        connection.exec_driver_sql("PRAGMA wal_autocheckpoint=2000")
        connection.commit()
    assert path.stat().st_size >= empty_size + 5_000_000  # the 5 MB left the WAL for the database file


def test_partitions_start_where_the_retention_window_does(monkeypatch) -> None:
    import datetime as dt

    from email_assets import settings

    monkeypatch.delenv("EMAIL_ASSETS_START_DATE", raising=False)
    monkeypatch.setenv("EMAIL_ASSETS_RETENTION_DAYS", "30")
    assert settings.start_date(dt.date(2026, 12, 1)) == "2026-11-02"  # 30 days kept: Nov 2 .. Dec 1
    monkeypatch.setenv("EMAIL_ASSETS_RETENTION_DAYS", "0")
    assert settings.start_date(dt.date(2026, 12, 1)) == settings.DEFAULT_START_DATE
    monkeypatch.setenv("EMAIL_ASSETS_START_DATE", "2025-06-01")
    assert settings.start_date() == "2025-06-01"
