"""Range runs: many account x day partitions in one run, still reported per partition."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from email_assets import settings
from email_assets.defs.materialize import materialize_range
from email_assets.defs.partitions import partition_key
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import chunks, cleaned_texts, parsed_emails, raw_messages
from email_assets_tests.conftest import add_account, message, utc

FIRST = dt.date(2026, 11, 1)
DAYS = [FIRST + dt.timedelta(days=offset) for offset in range(5)]
ASSETS = ["raw_messages", "parsed_emails", "cleaned_text", "email_embeddings"]


def mail_on_days(mail_user, per_day: dict[dt.date, int]) -> None:
    mail_user.append(
        [
            (message(f"day {day} number {n}", f"Body {n} of {day}: the quarterly numbers."), utc(day, 8 + n))
            for day, count in per_day.items()
            for n in range(count)
        ]
    )


def latest(instance: dg.DagsterInstance, asset: str, account: str, day: dt.date) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(partition_key(account, day))]),
        limit=1,
    ).records
    assert records, f"{asset} {day} not materialized"
    return records[0].asset_materialization


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckEvaluation]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [record.event_log_entry.dagster_event.event_specific_data for record in records]


def test_one_run_over_five_days_reports_each_partition(mail_user, instance) -> None:
    counts = {DAYS[0]: 2, DAYS[1]: 0, DAYS[2]: 3, DAYS[3]: 1, DAYS[4]: 1}
    mail_on_days(mail_user, counts)
    assert add_account(mail_user, "work") == 0

    result = materialize_range(instance, "work", DAYS[0], DAYS[-1])
    assert result.success

    store = MessageStore(settings.database_url())
    for day, count in counts.items():
        for table in (raw_messages, parsed_emails, cleaned_texts):
            assert store.count(table, "work", day.isoformat()) == count
        assert store.count(chunks, "work", day.isoformat()) == count  # short mails: one chunk each
        for asset in ASSETS:
            materialization = latest(instance, asset, "work", day)
            assert materialization.metadata["messages"].value == count, (asset, day)
        assert latest(instance, "raw_messages", "work", day).metadata["fetched"].value == count
    # Every partition's checks, each with its own partition, all passing.
    evaluations = check_evaluations(instance, result.run_id)
    by_partition: dict[str, set[str]] = {}
    for evaluation in evaluations:
        assert evaluation.passed, evaluation
        by_partition.setdefault(str(evaluation.partition), set()).add(evaluation.check_name)
    assert set(by_partition) == {str(partition_key("work", day)) for day in DAYS}
    assert all(len(names) == 8 for names in by_partition.values())
    # The range run's data version is one value for its five partitions (Dagster takes one per step).
    versions = {latest(instance, "raw_messages", "work", day).tags["dagster/data_version"] for day in DAYS}
    assert len(versions) == 1


def test_a_range_spanning_two_accounts_syncs_each(mail_user, dovecot, instance) -> None:
    mail_on_days(mail_user, {DAYS[0]: 1})
    assert add_account(mail_user, "alpha") == 0
    other = type(mail_user)(dovecot, f"{mail_user.name}b", mail_user.password + "b")
    dovecot.add_user(other.name, other.password)
    mail_on_days(other, {DAYS[0]: 2})
    assert add_account(other, "beta") == 0

    instance.add_dynamic_partitions("accounts", ["alpha", "beta"])
    result = materialize_range(instance, "alpha", DAYS[0], DAYS[0], last_account="beta")
    assert result.success
    store = MessageStore(settings.database_url())
    assert store.count(raw_messages, "alpha", DAYS[0].isoformat()) == 1
    assert store.count(raw_messages, "beta", DAYS[0].isoformat()) == 2
    assert latest(instance, "email_embeddings", "beta", DAYS[0]).metadata["messages"].value == 2


def test_a_failed_blocking_check_skips_downstream_and_marks_only_its_partition(mail_user, instance) -> None:
    mail_on_days(mail_user, {DAYS[0]: 1, DAYS[1]: 1})
    assert add_account(mail_user, "work") == 0
    assert materialize_range(instance, "work", DAYS[0], DAYS[1]).success
    store = MessageStore(settings.database_url())
    with store.engine.begin() as connection:  # the stored bytes of one day no longer match their hash
        connection.execute(
            sa.update(raw_messages).where(raw_messages.c.day == DAYS[1].isoformat()).values(sha256="0" * 64)
        )

    result = materialize_range(instance, "work", DAYS[0], DAYS[1], raise_on_error=False)
    assert not result.success
    failed = [e for e in check_evaluations(instance, result.run_id) if not e.passed]
    assert [(e.check_name, str(e.partition)) for e in failed] == [
        ("raw_bytes_intact", str(partition_key("work", DAYS[1])))
    ]
    succeeded = {event.step_key for event in result.all_events if event.event_type_value == "STEP_SUCCESS"}
    assert succeeded == set()  # raw_messages failed on its blocking check; nothing was built on it
    for day in DAYS[:2]:
        key = str(partition_key("work", day))
        records_filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey("parsed_emails"), asset_partitions=[key])
        [record] = instance.fetch_materializations(records_filter, limit=1).records
        assert record.run_id != result.run_id
    # The check's status is kept per partition: the untouched day still passes.
    check_key = dg.AssetCheckKey(dg.AssetKey("raw_messages"), "raw_bytes_intact")
    infos = instance.event_log_storage.get_asset_check_partition_info([check_key])
    statuses = {info.partition_key: info.latest_execution_status.value for info in infos}
    assert statuses == {
        str(partition_key("work", DAYS[0])): "SUCCEEDED",
        str(partition_key("work", DAYS[1])): "FAILED",
    }
    assert all(info.is_current for info in infos)
