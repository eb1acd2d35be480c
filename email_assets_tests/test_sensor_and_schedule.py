"""mailbox_highwater_sensor and email_sync_schedule against a real Dovecot and instance."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import sqlalchemy as sa

from email_assets import settings
from email_assets.definitions import RESOURCES
from email_assets.defs.materialize import materialize_partitions
from email_assets.defs.partitions import MAX_RUN_SECONDS
from email_assets.defs.schedules import email_sync_schedule
from email_assets.defs.sensors import mailbox_highwater_sensor
from email_assets.storage.accounts import AccountStore
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import accounts as accounts_table
from email_assets_tests.conftest import add_account, message, run_cli, utc

DAY = dt.date(2026, 11, 20)


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=RESOURCES)
    return mailbox_highwater_sensor(context)


def described(request: dg.RunRequest) -> str:
    """`acct|day` for a one-day run, `acct|first..acct|last` for a range run."""
    if request.partition_key is not None:
        return str(request.partition_key)
    key_range = request.partition_key_range
    return f"{key_range.start}..{key_range.end}"


def requested(result: dg.SensorResult) -> list[str]:
    for request in result.run_requests:
        assert request.tags["email_assets/account"]  # the run queue's per-account limit
        assert request.tags["dagster/max_runtime"] == str(MAX_RUN_SECONDS)  # a lost worker's run ends
    return sorted(described(request) for request in result.run_requests)


def test_sensor_requests_only_days_with_new_mail(mail_user, instance) -> None:
    mail_user.append([(message("a", "a"), utc(DAY)), (message("b", "b"), utc(DAY + dt.timedelta(days=1)))])
    assert add_account(mail_user, "work") == 0

    first = tick(instance, None)
    assert requested(first) == ["work|2026-11-20..work|2026-11-21"]  # one range run
    cursor = json.loads(first.cursor)
    assert cursor["work"]["INBOX"]["uidnext"] == 3
    assert set(cursor["work"]) == {"INBOX", "Sent"}  # Junk and Trash are not synced by default

    quiet = tick(instance, first.cursor)
    quiet_cursor = json.loads(quiet.cursor)
    assert quiet_cursor.pop("_polled").keys() == cursor.pop("_polled").keys() == {"work"}
    assert quiet.run_requests == [] and quiet_cursor == cursor

    mail_user.append([(message("c", "c"), utc(DAY + dt.timedelta(days=3)))])
    later = tick(instance, first.cursor)
    assert requested(later) == ["work|2026-11-23"]
    again = tick(instance, first.cursor)  # a repeated tick asks for the same run: same run_key
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in later.run_requests]


def test_uidvalidity_change_requests_resync_of_the_folder(mail_user, instance) -> None:
    mail_user.append([(message("p", "p"), utc(DAY))], folder="Projects")
    assert add_account(mail_user, "work", ["--folders", "Projects"]) == 0
    first = tick(instance, None)
    assert requested(first) == ["work|2026-11-20"]
    assert materialize_partitions(instance, "work", [DAY])[0].success
    client = mail_user.server.connect(mail_user.name)
    client.delete("Projects")
    client.logout()
    # Recreated without the 20th's message: that stored day must be resynced (and emptied) too.
    mail_user.append([(message("q", "q"), utc(DAY - dt.timedelta(days=5)))], folder="Projects")
    resync = tick(instance, first.cursor)
    assert requested(resync) == ["work|2026-11-15..work|2026-11-20"]


def test_sensor_survives_a_broken_account_and_registers_partitions(mail_user, instance, monkeypatch) -> None:
    mail_user.append([(message("a", "a"), utc(DAY))])
    assert add_account(mail_user, "work") == 0
    monkeypatch.delenv("DAGSTER_HOME")  # as if added from a shell without DAGSTER_HOME
    assert (
        run_cli(
            [
                "accounts",
                "add",
                "broken",
                "--host",
                "127.0.0.1",
                "--port",
                "1",
                "--username",
                "x",
                "--password-stdin",
                "--no-verify",
            ],
            stdin="pw\n",
        )
        == 0
    )
    assert "broken" not in instance.get_dynamic_partitions("accounts")
    result = tick(instance, None)
    assert requested(result) == ["work|2026-11-20"]
    assert "broken" not in json.loads(result.cursor)
    [add_request] = result.dynamic_partitions_requests
    assert list(add_request.partition_keys) == ["broken"]


def test_schedule_requests_today_and_yesterday_for_every_account(instance) -> None:
    instance.add_dynamic_partitions("accounts", ["home", "work"])
    when = dt.datetime(2026, 11, 25, 14, 0, tzinfo=dt.UTC)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    requests = email_sync_schedule(context)
    assert sorted(described(r) for r in requests) == [
        "home|2026-11-24..home|2026-11-25",
        "work|2026-11-24..work|2026-11-25",
    ]
    assert len({r.run_key for r in requests}) == 2
    assert {r.tags["email_assets/account"] for r in requests} == {"home", "work"}
    assert {r.tags["dagster/max_runtime"] for r in requests} == {str(MAX_RUN_SECONDS)}


def test_instance_config_caps_runs_per_account(instance, mail_user) -> None:
    """The project's dagster.yaml, as loaded by the instance the runs go through."""
    from email_assets.definitions import defs

    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    config = instance.get_concurrency_config()
    assert {"key": "dagster/partition/account", "value": {"applyLimitPerUniqueValue": True}, "limit": 2} in (
        config.run_queue_config.tag_concurrency_limits
    )
    # No pool: a SIGKILLed run would keep its claim forever; the Chroma writer lock is a file lock.
    assert defs.get_assets_def("email_embeddings").op.pool is None
    mail_user.append([(message("a", "a"), utc(DAY))])
    assert add_account(mail_user, "work") == 0
    [result] = materialize_partitions(instance, "work", [DAY])
    assert instance.get_run_by_id(result.run_id).tags["dagster/partition/account"] == "work"


def test_days_become_spans_of_at_most_the_run_cap() -> None:
    from email_assets.defs.run_requests import day_spans

    start = dt.date(2026, 1, 1)
    month = [start + dt.timedelta(days=n) for n in range(30)]
    assert day_spans(month, 31) == [(start, month[-1])]
    assert day_spans([*month, start + dt.timedelta(days=31)], 31) == [
        (start, month[-1]),
        (start + dt.timedelta(days=31), start + dt.timedelta(days=31)),
    ]
    far = [start, start + dt.timedelta(days=400)]  # no year of idle days between them
    assert day_spans(far, 31) == [(far[0], far[0]), (far[1], far[1])]


def test_an_unreachable_account_is_failing_in_accounts_list_and_on_the_tick(mail_user, instance, capsys) -> None:
    assert add_account(mail_user, "work") == 0
    store = MessageStore(settings.database_url())
    accounts = AccountStore(store.url)
    account = accounts.get("work")
    with accounts.engine.begin() as connection:  # the server moved: nothing answers on port 1
        connection.execute(sa.update(accounts_table).where(accounts_table.c.name == "work").values(port=1))
    capsys.readouterr()
    first = tick(instance, None)
    second = tick(instance, first.cursor)
    assert second.run_requests == []
    reason = second.skip_reason.skip_message if second.skip_reason else ""
    assert reason.startswith("could not reach 1 of 1 account(s): work (")
    assert run_cli(["accounts", "list"]) == 0
    listing = capsys.readouterr().out
    assert "failing (2 in a row:" in listing, listing
    with accounts.engine.begin() as connection:  # back where it was: the next tick clears the failure
        connection.execute(
            sa.update(accounts_table).where(accounts_table.c.name == "work").values(port=account.port)
        )
    assert tick(instance, second.cursor).skip_reason is None
    assert accounts.get("work").consecutive_failures == 0


def test_no_account_is_a_skip_not_a_failed_tick(instance) -> None:
    result = tick(instance, None)
    assert result.run_requests == []
    assert result.skip_reason is not None
    assert "email-assets accounts add" in result.skip_reason.skip_message


def test_mail_outside_the_partitions_is_dropped_for_its_account_only(mail_user, plain_mail_user, instance, capsys):
    """Mail from 2019 (before the start date) and from 2099 (a server's future INTERNALDATE)
    must not fail the tick: Dagster refuses a run for a key no partition has."""
    mail_user.append(
        [(message("old", "From before the partitions."), utc(dt.date(2019, 3, 1))), (message("now", "Now."), utc(DAY))]
    )
    mail_user.deliver(message("future", "From a broken clock."), utc(dt.date(2099, 1, 1)))
    plain_mail_user.append([(message("other", "Another account's mail."), utc(DAY + dt.timedelta(days=1)))])
    assert add_account(mail_user, "odd") == 0
    assert add_account(plain_mail_user, "other") == 0

    result = tick(instance, None)
    assert requested(result) == ["odd|2026-11-20", "other|2026-11-21"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "outside the partitions" in line]
    assert len(warnings) == 1 and "odd: mail dated 2019-03-01, 2099-01-01 is outside" in warnings[0], warnings

    plain_mail_user.append([(message("more", "More mail."), utc(DAY + dt.timedelta(days=2)))])
    after = tick(instance, result.cursor)  # the cursor moved on: the next tick works as usual
    assert requested(after) == ["other|2026-11-22"]


def test_schedule_asks_only_for_days_the_partitions_hold(instance, monkeypatch) -> None:
    instance.add_dynamic_partitions("accounts", ["work"])
    first_day = dt.datetime(2024, 1, 1, 0, 10, tzinfo=dt.UTC)  # the start date: no yesterday
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=first_day)
    assert [described(r) for r in email_sync_schedule(context)] == ["work|2024-01-01"]
