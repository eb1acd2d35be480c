"""Parsing and cleaning on worker processes give exactly the rows of the in-process path."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path

import pytest
import sqlalchemy as sa

from email_assets import parallel
from email_assets.mail.records import FetchedMessage
from email_assets.pipeline import clean_partition, parse_partition
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import cleaned_texts, parsed_emails
from email_assets_tests.real_mail import all_real_messages

DAY = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)


def _store_with_real_mail(path: Path) -> MessageStore:
    store = MessageStore(f"sqlite:///{path}")
    messages = [
        FetchedMessage("INBOX", 7, uid, DAY, (), len(raw), raw)
        for uid, raw in enumerate((p.read_bytes() for p in all_real_messages()), start=1)
    ]
    store.save_fetched("real", messages, None)
    return store


def _rows(store: MessageStore, table: sa.Table) -> list[dict]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(table).order_by(table.c.message_key)).mappings()
        return [{k: v for k, v in row.items() if k != "run_id"} for row in rows]


def test_worker_processes_match_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = _store_with_real_mail(tmp_path / "serial.sqlite")
    parse_partition(serial, "real", "2026-11-20", None)
    clean_partition(serial, "real", "2026-11-20", None)

    monkeypatch.setattr(parallel, "MIN_ITEMS_FOR_WORKERS", 2)
    pooled = _store_with_real_mail(tmp_path / "pooled.sqlite")
    report = parse_partition(pooled, "real", "2026-11-20", None)
    assert report.processed == report.messages > 150 and report.failures == 0
    clean_partition(pooled, "real", "2026-11-20", None)

    assert _rows(pooled, parsed_emails) == _rows(serial, parsed_emails)
    assert _rows(pooled, cleaned_texts) == _rows(serial, cleaned_texts)


def _parse_and_clean_in(path: str) -> None:
    """Runs in a daemonic child, as a run does in a Celery prefork worker."""
    parallel.MIN_ITEMS_FOR_WORKERS = 2  # the pool's path, were it allowed to start
    store = _store_with_real_mail(Path(path))
    parse_partition(store, "real", "2026-11-20", None)
    clean_partition(store, "real", "2026-11-20", None)


def test_a_daemonic_process_gets_the_same_rows_without_a_pool(tmp_path: Path) -> None:
    serial = _store_with_real_mail(tmp_path / "serial.sqlite")
    parse_partition(serial, "real", "2026-11-20", None)
    clean_partition(serial, "real", "2026-11-20", None)

    child = multiprocessing.get_context("spawn").Process(
        target=_parse_and_clean_in, args=(str(tmp_path / "daemonic.sqlite"),), daemon=True
    )
    child.start()
    child.join(300)
    assert child.exitcode == 0  # "daemonic processes are not allowed to have children" made it 1
    daemonic = MessageStore(f"sqlite:///{tmp_path / 'daemonic.sqlite'}")
    assert _rows(daemonic, parsed_emails) == _rows(serial, parsed_emails)
    assert _rows(daemonic, cleaned_texts) == _rows(serial, cleaned_texts)
