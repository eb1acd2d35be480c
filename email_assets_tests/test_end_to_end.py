"""The whole product on real parts: Dovecot -> CLI -> Dagster instance -> SQLite -> Chroma -> search."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from email_assets import settings
from email_assets.defs.materialize import materialize_partitions
from email_assets.embedding import embedder_from_spec
from email_assets.storage.database import engine_for
from email_assets.storage.lexical import LexicalIndex, MessageFilter
from email_assets.storage.messages import MessageStore, pack_directory
from email_assets.storage.tables import (
    chunks,
    cleaned_texts,
    message_locations,
    parsed_emails,
    raw_messages,
    search_documents,
)
from email_assets.storage.vectors import VectorStore
from email_assets_tests.conftest import add_account, message, run_cli, utc

DAY = dt.date(2026, 11, 20)
NEXT_DAY = DAY + dt.timedelta(days=1)

OUTAGE = message(
    "Database outage postmortem",
    "The primary ran out of disk during the vacuum and failover never triggered because the health "
    "check only probed the port.\r\n\r\nOn Thu, 19 Nov 2026, Bob <bob@example.org> wrote:\r\n> old quoted text\r\n",
)
LISBON = message("Team offsite", "Hotel booked in Lisbon near Alfama for the offsite.\r\n\r\n-- \r\nAna\r\n")
HTML = (
    b"From: News <news@example.com>\r\nTo: demo@example.test\r\nSubject: Garden club\r\n"
    b"Message-ID: <garden@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><style>p{color:red}</style></head><body><p>Tomato seedlings swap on Sunday</p>"
    b'<img src="https://t.example/p.gif"></body></html>\r\n'
)


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        found[materialization.asset_key.to_user_string()] = {k: v.value for k, v in materialization.metadata.items()}
    return found


def _table(table: sa.Table) -> list[dict]:
    with engine_for(settings.database_url()).connect() as connection:
        found = [dict(row) for row in connection.execute(sa.select(table)).mappings()]
    if table is raw_messages:  # the bytes themselves are in a pack beside the SQLite file
        stored = MessageStore(settings.database_url()).raw_bytes(row["message_key"] for row in found)
        for row in found:
            row["raw"] = stored[row["message_key"]]
    return found


def _snapshot() -> dict[str, list[dict]]:
    return {
        table.name: _table(table) for table in (raw_messages, message_locations, parsed_emails, cleaned_texts, chunks)
    }


def test_account_partition_end_to_end(mail_user, instance, capsys: pytest.CaptureFixture[str]) -> None:
    mail_user.append([(OUTAGE, utc(DAY, 9)), (LISBON, utc(DAY, 23, 59)), (HTML, utc(NEXT_DAY, 0, 1))])
    assert add_account(mail_user, "work") == 0
    assert "login verified" in capsys.readouterr().out
    assert instance.get_dynamic_partitions("accounts") == ["work"]

    first = materialize_partitions(instance, "work", [DAY, NEXT_DAY])
    assert all(result.success for result in first)
    day_meta, next_meta = _metadata(first[0]), _metadata(first[1])
    assert set(day_meta) == {"raw_messages", "parsed_emails", "cleaned_text", "email_embeddings"}
    for asset, values in day_meta.items():
        assert values["messages"] == 2 and values["failures"] == 0, asset
    assert day_meta["raw_messages"]["fetched"] == 2
    assert day_meta["raw_messages"]["bytes"] == len(OUTAGE) + len(LISBON)
    assert next_meta["raw_messages"]["fetched"] == 1
    embeddings = day_meta["email_embeddings"]
    assert (embeddings["chunks"], embeddings["embedded"], embeddings["reused"]) == (2, 2, 0)

    # raw_messages: exact bytes, by UTC INTERNALDATE day, with IMAP coordinates.
    raw = {row["sha256"]: row for row in _table(raw_messages)}
    assert set(raw) == {hashlib.sha256(m).hexdigest() for m in (OUTAGE, LISBON, HTML)}
    assert raw[hashlib.sha256(LISBON).hexdigest()]["raw"] == LISBON
    assert raw[hashlib.sha256(LISBON).hexdigest()]["day"] == DAY.isoformat()
    assert raw[hashlib.sha256(HTML).hexdigest()]["day"] == NEXT_DAY.isoformat()
    locations = _table(message_locations)
    assert sorted(loc["uid"] for loc in locations) == [1, 2, 3]
    assert {loc["folder"] for loc in locations} == {"INBOX"}

    parsed = {row["subject"]: row for row in _table(parsed_emails)}
    assert parsed["Database outage postmortem"]["from_address"] == "ana@example.org"
    assert parsed["Database outage postmortem"]["message_id"] == "database.outage.postmortem@example.org"
    cleaned = {row["message_key"]: row for row in _table(cleaned_texts)}
    outage_key = parsed["Database outage postmortem"]["message_key"]
    assert cleaned[outage_key]["text"].startswith("The primary ran out of disk")
    assert "old quoted text" not in cleaned[outage_key]["text"]
    assert "old quoted text" in cleaned[outage_key]["quoted_text"]
    garden = cleaned[parsed["Garden club"]["message_key"]]
    assert garden["source"] == "html" and garden["text"] == "Tomato seedlings swap on Sunday"

    # email_embeddings: the right vectors, in Chroma, under chunk ids from the table.
    embedder = embedder_from_spec("local")
    vectors = VectorStore(settings.chroma_location(), embedder.model_name)
    chunk_rows = _table(chunks)
    assert vectors.count() == len(chunk_rows) == 3
    stored = vectors.get([row["chunk_id"] for row in chunk_rows])
    expected = embedder.embed([row["text"] for row in chunk_rows])
    by_id = dict(zip(stored["ids"], stored["embeddings"], strict=True))
    for row, vector in zip(chunk_rows, expected, strict=True):
        assert list(by_id[row["chunk_id"]]) == pytest.approx(vector, abs=1e-5)

    # Search answers from Chroma.
    assert run_cli(["search", "why did failover not happen", "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert hit["subject"] == "Database outage postmortem"
    assert hit["message_id"] == "database.outage.postmortem@example.org"
    assert hit["account"] == "work" and hit["from"] == "ana@example.org"
    assert {"chunk_id", "score", "date", "text"} <= set(hit)

    # The CLI's search, in a process of its own, never imports torch or sentence-transformers.
    probe = (
        "import sys; from email_assets import cli;"
        "code = cli.main(['search', 'why did failover not happen', '-k', '1']);"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules);"
        "print('heavy:', heavy); sys.exit(code)"
    )
    searched = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert searched.returncode == 0, searched.stderr
    assert "Database outage postmortem" in searched.stdout and "heavy: []" in searched.stdout
    assert searched.stderr == ""

    # Status says what the store holds, per account.
    assert run_cli(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["database_is_new"] is False and status["embedder"] == "local"
    (work,) = status["accounts"]
    assert (work["name"], work["health"], work["messages"], work["chunks"]) == ("work", "ok", 3, 3)
    assert dt.datetime.fromisoformat(work["last_sync_at"]).tzinfo is not None

    # Trace goes back to the IMAP coordinates and the runs.
    assert run_cli(["trace", hit["chunk_id"], "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)
    assert lineage["locations"][0]["folder"] == "INBOX" and lineage["locations"][0]["uid"] == 1
    assert lineage["raw"]["sha256"] == hashlib.sha256(OUTAGE).hexdigest()
    assert lineage["raw"]["stored_in"].startswith("pack ") and lineage["raw"]["bytes_readable"]
    assert OUTAGE.decode().startswith(lineage["raw"]["preview"])
    assert lineage["vector"]["dimensions"] == 384
    assert lineage["chunk"]["run_id"] == first[0].run_id

    # A second materialization changes nothing.
    before = _snapshot()
    second = materialize_partitions(instance, "work", [DAY, NEXT_DAY])
    again = _metadata(second[0])
    assert again["raw_messages"]["fetched"] == 0
    assert again["email_embeddings"]["embedded"] == 0 and again["email_embeddings"]["reused"] == 2
    assert _snapshot() == before
    assert vectors.count() == 3


def test_password_never_reaches_logs_or_event_log(mail_user, instance, project_env: Path, capfd) -> None:
    mail_user.append([(LISBON, utc(DAY))])
    assert add_account(mail_user, "work") == 0
    results = materialize_partitions(instance, "work", [DAY])
    assert results[0].success
    wrong = add_account(mail_user, "bad", password="not-" + mail_user.password)
    assert wrong == 2
    captured = capfd.readouterr()
    assert mail_user.password not in captured.out + captured.err
    records = instance.get_records_for_run(results[0].run_id).records
    assert records
    for record in records:
        assert mail_user.password not in json.dumps(dg.serialize_value(record.event_log_entry))
    for path in project_env.rglob("*"):
        if path.is_file() and path.suffix not in {".sqlite3", ".bin"}:
            assert mail_user.password.encode() not in path.read_bytes(), path
    with engine_for(settings.database_url()).connect() as connection:
        secret = connection.execute(sa.text("select encrypted_secret from accounts where name='work'")).scalar_one()
    assert mail_user.password.encode() not in secret


def test_wrong_password_fails_only_that_partition_with_one_line(mail_user, instance, capsys) -> None:
    mail_user.append([(LISBON, utc(DAY))])
    assert add_account(mail_user, "work") == 0
    assert add_account(mail_user, "broken", ["--no-verify"], password="wrong-password") == 0
    broken = materialize_partitions(instance, "broken", [DAY], raise_on_error=False)[0]
    assert not broken.success
    failure = next(e for e in broken.all_events if e.event_type_value == "STEP_FAILURE")
    reason = failure.event_specific_data.error.message
    assert "wrong-password" not in reason
    work = materialize_partitions(instance, "work", [DAY])[0]
    assert work.success
    capsys.readouterr()
    assert run_cli(["accounts", "list", "--json"]) == 0
    listed = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert listed["broken"]["consecutive_failures"] == 1
    assert "refused" in listed["broken"]["last_error"] or "certificate" in listed["broken"]["last_error"]
    assert listed["work"]["consecutive_failures"] == 0


def _counts() -> dict[str, int]:
    with engine_for(settings.database_url()).connect() as connection:
        return {
            table.name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (raw_messages, message_locations, parsed_emails, cleaned_texts, chunks, search_documents)
        }


ONE_MESSAGE_LEFT = {
    name: 1
    for name in ("raw_messages", "message_locations", "parsed_emails", "cleaned_texts", "chunks", "search_documents")
}


def _found_by_words(text: str) -> list[str]:
    """Subjects the lexical index returns, after an FTS5 integrity check of the index itself."""
    engine = engine_for(settings.database_url())
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO search_fts(search_fts) VALUES ('integrity-check')")
    keys = [key for key, _score in LexicalIndex(settings.database_url()).search(text, 10, MessageFilter())]
    with engine.connect() as connection:
        subjects = dict(connection.execute(sa.select(parsed_emails.c.message_key, parsed_emails.c.subject)).all())
    return [subjects.get(key) for key in keys]


def test_expunged_mail_leaves_every_asset_and_chroma(mail_user, instance) -> None:
    mail_user.append([(OUTAGE, utc(DAY, 9)), (LISBON, utc(DAY, 10))])
    assert add_account(mail_user, "work") == 0
    materialize_partitions(instance, "work", [DAY])
    vectors = VectorStore(settings.chroma_location(), embedder_from_spec("local").model_name)
    assert vectors.count() == 2
    assert _found_by_words("vacuum failover Lisbon") == ["Database outage postmortem", "Team offsite"]
    mail_user.expunge("1")
    result = materialize_partitions(instance, "work", [DAY])[0]
    metadata = _metadata(result)
    assert metadata["raw_messages"]["removed"] == 1
    assert metadata["email_embeddings"]["removed"] == 1
    assert _counts() == ONE_MESSAGE_LEFT
    [remaining] = vectors.collection.get(include=["documents"])["documents"]
    assert "Lisbon" in remaining
    assert _found_by_words("vacuum failover Lisbon") == ["Team offsite"]  # the expunged one is not found by words


def test_retention_job_purges_tables_and_chroma(mail_user, instance, monkeypatch) -> None:
    from email_assets.definitions import defs

    today = dt.datetime.now(dt.UTC).date()
    old_day = today - dt.timedelta(days=40)
    mail_user.append([(OUTAGE, utc(old_day)), (LISBON, utc(today, 0, 5))])
    assert add_account(mail_user, "work") == 0
    materialize_partitions(instance, "work", [old_day, today])
    assert _counts()["raw_messages"] == 2 and _counts()["search_documents"] == 2
    monkeypatch.setenv("EMAIL_ASSETS_RETENTION_DAYS", "30")
    result = defs.resolve_job_def("retention_job").execute_in_process(instance=instance)
    assert result.success
    assert _counts() == ONE_MESSAGE_LEFT
    assert _found_by_words("vacuum failover Lisbon") == ["Team offsite"]
    packs = b"".join(path.read_bytes() for path in pack_directory(settings.database_url()).rglob("*.pack"))
    assert OUTAGE not in packs and LISBON in packs  # the expired message's bytes are gone from disk too
    vectors = VectorStore(settings.chroma_location(), embedder_from_spec("local").model_name)
    assert [m["day"] for m in vectors.collection.get(include=["metadatas"])["metadatas"]] == [today.isoformat()]
    # A partition outside the window is not fetched again.
    again = _metadata(materialize_partitions(instance, "work", [old_day])[0])
    assert again["raw_messages"]["fetched"] == 0 and again["raw_messages"]["messages"] == 0
