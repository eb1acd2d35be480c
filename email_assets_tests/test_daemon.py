"""Through `dagster-daemon`, as an operator runs it: the sensor's first sync and a shell backfill."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from email_assets import settings
from email_assets.defs.materialize import materialize_partitions
from email_assets.defs.partitions import ACCOUNT_TAG, partition_key
from email_assets.demo.daemon import DagsterDaemon, wait_for
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import chunks, raw_messages
from email_assets_tests.conftest import add_account, message, run_cli, utc

FIRST = dt.date(2026, 10, 20)
MONTH = [FIRST + dt.timedelta(days=n) for n in range(30)]


def embedded_partitions(instance: dg.DagsterInstance) -> set[str]:
    return {str(key) for key in instance.get_materialized_partitions(dg.AssetKey("email_embeddings"))}


def finished_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    runs = instance.get_runs()
    return runs if runs and all(run.is_finished for run in runs) else []


def test_a_new_account_reaches_every_asset_through_the_daemon_in_one_run(mail_user, instance, project_env) -> None:
    mail_user.append([(message(f"note {day}", f"Minutes of {day}."), utc(day)) for day in MONTH])
    assert add_account(mail_user, "work") == 0
    wanted = {str(partition_key("work", day)) for day in MONTH}

    with DagsterDaemon(project_env / "dagster_home") as daemon:
        wait_for(lambda: wanted <= embedded_partitions(instance), 240, f"all 30 days embedded\n{daemon.log_tail()}")
        runs = wait_for(lambda: finished_runs(instance), 60, "runs finished")

    assert len(runs) <= 2, [run.tags for run in runs]
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    assert all(run.tags[ACCOUNT_TAG] == "work" for run in runs)
    store = MessageStore(settings.database_url())
    for day in MONTH:
        assert store.count(raw_messages, "work", day.isoformat()) == 1
        assert store.count(chunks, "work", day.isoformat()) == 1


def test_a_backfill_from_the_shell_is_run_by_the_daemon(mail_user, instance, project_env, capsys) -> None:
    mail_user.append([(message(f"week {day}", f"Report of {day}."), utc(day)) for day in MONTH[:10]])
    assert add_account(mail_user, "work") == 0
    since, until = MONTH[0].isoformat(), MONTH[9].isoformat()
    daemon = DagsterDaemon(project_env / "dagster_home")
    daemon.stop_instigators(sensors=["mailbox_highwater_sensor"], schedules=["email_sync_schedule"])
    with daemon:
        assert run_cli(["backfill", "work", "--since", since, "--until", until, "--wait"]) == 0
    out = capsys.readouterr().out
    assert "10/10 partitions done" in out, out
    [backfill] = instance.get_backfills()
    assert backfill.status.value == "COMPLETED_SUCCESS"
    assert backfill.tags[ACCOUNT_TAG] == "work"
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    assert len(runs) == 1 and runs[0].tags[ACCOUNT_TAG] == "work"  # 10 days: one run of the range
    assert {str(partition_key("work", day)) for day in MONTH[:10]} <= embedded_partitions(instance)
    assert len(instance.get_runs()) == 1  # the stopped sensor launched nothing


def test_backfill_errors_are_one_line(instance, capsys) -> None:
    assert run_cli(["backfill", "nobody", "--since", "2026-11-01"]) == 2
    assert "no partition for account 'nobody'" in capsys.readouterr().err
    instance.add_dynamic_partitions("accounts", ["work"])
    assert run_cli(["backfill", "work", "--since", "2026-11-05", "--until", "2026-11-01"]) == 2
    assert "is before --since" in capsys.readouterr().err


def test_raw_messages_rematerialized_alone_is_followed_by_the_rest(mail_user, instance, project_env) -> None:
    """No job selects the downstream assets here: the automation sensor brings them along."""
    from email_assets.definitions import defs

    day = MONTH[0]
    mail_user.append([(message("first", "The first note."), utc(day))])
    assert add_account(mail_user, "work") == 0
    assert materialize_partitions(instance, "work", [day])[0].success
    daemon = DagsterDaemon(project_env / "dagster_home")
    daemon.stop_instigators(sensors=["mailbox_highwater_sensor"], schedules=["email_sync_schedule"])
    store = MessageStore(settings.database_url())
    with daemon:
        # Its first tick only takes stock (Dagster counts everything before it as handled).
        first_tick = "Finished auto-materialization tick for email_automation_sensor"
        wait_for(lambda: first_tick in daemon.log_path.read_text(), 120, f"automation tick\n{daemon.log_tail()}")
        mail_user.append([(message("second", "A late second note."), utc(day, 15))])
        raw_only = dg.materialize(
            [defs.get_assets_def("raw_messages")],
            instance=instance,
            partition_key=str(partition_key("work", day)),
            resources=defs.resources,
        )
        assert raw_only.success
        assert store.count(raw_messages, "work", day.isoformat()) == 2
        wait_for(lambda: store.count(chunks, "work", day.isoformat()) == 2, 240, f"re-embedded\n{daemon.log_tail()}")
        runs = wait_for(lambda: finished_runs(instance), 60, "runs finished")
    automated = [run for run in runs if run.tags.get("dagster/sensor_name") == "email_automation_sensor"]
    assert len(automated) == 1 and automated[0].status == dg.DagsterRunStatus.SUCCESS
    assert automated[0].asset_selection == {
        dg.AssetKey(name) for name in ("parsed_emails", "cleaned_text", "email_embeddings")
    }
