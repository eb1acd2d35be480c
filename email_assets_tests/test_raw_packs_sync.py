"""Raw bytes in pack files through real syncs on Dovecot: exact bytes, crash order, removal."""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import pytest

from email_assets.defs.checks import raw_check_results
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import raw_messages
from email_assets_tests.test_imap_sync import DAY, batch, rows, store, sync  # noqa: F401 - fixture


def pack_files(store: MessageStore) -> list[str]:  # noqa: F811 - the fixture
    assert store.packs is not None
    return store.packs.packs("work")


def test_bytes_go_to_a_pack_and_an_emptied_pack_is_deleted(mail_user, store) -> None:  # noqa: F811
    messages = batch(30, DAY, size=20_000)
    mail_user.append(messages)
    sync(mail_user, store, [DAY], batch_size=10)

    stored = rows(store, raw_messages)
    assert sorted(row["raw"] for row in stored) == sorted(raw for raw, _ in messages)
    [pack] = pack_files(store)
    assert {row["pack"] for row in stored} == {pack}
    with store.engine.connect() as connection:  # the table holds places, not a second copy
        assert connection.execute(raw_messages.select().where(raw_messages.c.raw != b"")).first() is None
    assert os.path.getsize(store.packs.directory / "work" / f"{pack}.pack") == sum(len(raw) for raw, _ in messages)

    path = store.packs.directory / "work" / f"{pack}.pack"
    before = path.read_bytes()
    allocated = os.stat(path).st_blocks * 512
    mail_user.expunge("1:29")
    sync(mail_user, store, [DAY])
    [last] = rows(store, raw_messages)
    assert last["raw"] == messages[29][0] and pack_files(store) == [pack]  # one message still lives there
    # The expunged messages' bytes are gone from the pack at once, and their blocks returned.
    after = path.read_bytes()
    start, end = last["pack_offset"], last["pack_offset"] + last["size"]
    assert len(after) == len(before) and after[start:end] == before[start:end]
    assert after[:start].count(0) == start and after[end:].count(0) == len(after) - end
    assert os.stat(path).st_blocks * 512 < allocated / 5
    mail_user.expunge("30")
    report = sync(mail_user, store, [DAY])
    assert report.removed[DAY.isoformat()] == 1
    assert rows(store, raw_messages) == [] and pack_files(store) == []


def test_bytes_written_but_never_committed_are_only_unreferenced(mail_user, store, monkeypatch) -> None:  # noqa: F811
    """A crash after a batch's bytes reach the pack but before its rows commit."""
    messages = batch(40, DAY, size=5_000)
    mail_user.append(messages)
    original = MessageStore.commit_prepared

    def crash(self, prepared):  # noqa: ANN001, ANN202
        raise RuntimeError("power cut")  # nothing of this batch commits

    monkeypatch.setattr(MessageStore, "commit_prepared", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        sync(mail_user, store, [DAY], batch_size=10)
    assert rows(store, raw_messages) == []
    monkeypatch.setattr(MessageStore, "commit_prepared", original)

    report = sync(mail_user, store, [DAY], batch_size=10)

    assert report.fetched[DAY.isoformat()] == 40
    assert sorted(row["raw"] for row in rows(store, raw_messages)) == sorted(raw for raw, _ in messages)
    [pack] = pack_files(store)
    assert os.path.getsize(store.packs.directory / "work" / f"{pack}.pack") > sum(len(raw) for raw, _ in messages)
    assert raw_check_results(store, "work", DAY.isoformat(), 0)[0].passed


def test_raw_bytes_intact_sees_a_damaged_or_lost_pack(mail_user, store) -> None:  # noqa: F811
    mail_user.append(batch(5, DAY, size=3_000))
    sync(mail_user, store, [DAY])
    [pack] = pack_files(store)
    path = store.packs.directory / "work" / f"{pack}.pack"
    damaged = bytearray(path.read_bytes())
    damaged[100] ^= 0xFF
    path.write_bytes(bytes(damaged))

    [intact, _] = raw_check_results(store, "work", DAY.isoformat(), 0)
    assert not intact.passed and intact.metadata["corrupt"].value == 1

    path.unlink()
    [intact, _] = raw_check_results(store, "work", DAY.isoformat(), 0)
    assert not intact.passed and intact.metadata["corrupt"].value == 5


def test_rows_of_an_earlier_release_keep_their_bytes_in_the_table(mail_user, store) -> None:  # noqa: F811
    older, newer = batch(3, DAY, prefix="old"), batch(3, DAY, prefix="new")
    mail_user.append(older)
    store.packs = None  # as the previous release stored them
    sync(mail_user, store, [DAY])
    mail_user.append(newer)

    sync(mail_user, MessageStore(store.url), [DAY])

    by_place = {row["pack"] is None: row for row in rows(store, raw_messages)}
    assert set(by_place) == {True, False}
    stored = list(MessageStore(store.url).raw_in_partition("work", DAY.isoformat()))
    assert sorted(row["raw"] for row in stored) == sorted(raw for raw, _ in older + newer)
    assert all(hashlib.sha256(row["raw"]).hexdigest() == row["sha256"] for row in stored)


def _sync_day_after(barrier, account, password: str, url: str, day) -> None:  # noqa: ANN001 - spawned process
    from email_assets.pipeline import sync_account_days

    barrier.wait()
    sync_account_days(account, password, MessageStore(url), [day], None, batch_size=20)


def test_two_processes_syncing_one_account_write_separate_packs(mail_user, store) -> None:  # noqa: F811
    import multiprocessing

    from email_assets_tests.test_imap_sync import account_for

    days = [DAY, DAY + dt.timedelta(days=1)]
    messages = [item for day in days for item in batch(600, day, size=4_000, prefix=day.isoformat())]
    mail_user.append(messages)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    account = account_for(mail_user, max_connections=2)
    workers = [
        context.Process(target=_sync_day_after, args=(barrier, account, mail_user.password, store.url, day))
        for day in days
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0

    stored = rows(store, raw_messages)
    assert sorted(row["raw"] for row in stored) == sorted(raw for raw, _ in messages)  # nothing torn or crossed
    assert all(hashlib.sha256(row["raw"]).hexdigest() == row["sha256"] for row in stored)
    assert len(pack_files(store)) == 2  # each writer held its own pack while the other wrote


def test_reparsing_an_unchanged_partition_reads_no_raw_bytes(mail_user, store) -> None:  # noqa: F811
    from email_assets.pipeline import parse_partition

    mail_user.append(batch(5, DAY))
    sync(mail_user, store, [DAY])
    assert parse_partition(store, "work", DAY.isoformat(), None).processed == 5
    for pack in pack_files(store):
        (store.packs.directory / "work" / f"{pack}.pack").unlink()  # any read would now fail

    again = parse_partition(store, "work", DAY.isoformat(), None)

    assert (again.processed, again.reused, again.messages) == (0, 5, 5)
