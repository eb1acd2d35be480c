"""Through `dagster-daemon`, as an operator runs it: the sensor's first sync and a shell backfill."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import pytest

from email_assets import settings
from email_assets.defs.materialize import materialize_partitions
from email_assets.defs.partitions import ACCOUNT_TAG, partition_key
from email_assets.demo.daemon import DagsterDaemon, wait_for
from email_assets.embedding import embedder_from_spec
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import chunks, cleaned_texts, message_locations, parsed_emails, raw_messages
from email_assets.storage.vectors import VectorStore
from email_assets_tests.conftest import _new_user, add_account, message, run_cli, utc

pytestmark = pytest.mark.daemon

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


def _tick_started(daemon: DagsterDaemon) -> int:
    return daemon.log_path.read_text(errors="replace").count(
        "Checking for new runs for sensor: mailbox_highwater_sensor"
    )


def test_expunge_flag_change_and_move_reach_every_asset_in_one_tick_and_its_run(mail_user, instance, project_env):
    """The README's mirroring promise, in daily operation: daemon, sensor and runs as shipped."""
    ten, five, today = dt.date(2026, 11, 10), dt.date(2026, 11, 15), dt.date(2026, 11, 20)
    mail_user.append(
        [
            (message("expunged", "This one will be deleted."), utc(ten)),
            (message("flagged", "This one will be starred."), utc(five)),
            (message("moved", "This one will be filed away."), utc(today)),
            (message("stays", "This one stays where it is."), utc(today, 13)),
        ]
    )
    assert add_account(mail_user, "work") == 0
    store = MessageStore(settings.database_url())
    days = [ten, five, today]
    with DagsterDaemon(project_env / "dagster_home", env={"EMAIL_ASSETS_SENSOR_INTERVAL_SECONDS": "15"}) as daemon:
        wanted = {str(partition_key("work", day)) for day in days}
        wait_for(lambda: wanted <= embedded_partitions(instance), 240, f"first sync\n{daemon.log_tail()}")
        first_runs = wait_for(lambda: finished_runs(instance), 60, "first runs finished")
        vectors = VectorStore(settings.chroma_location(), embedder_from_spec("local").model_name)
        before = vectors.collection.get(include=["embeddings", "metadatas"])
        assert not any(metadata["flagged"] for metadata in before["metadatas"])
        # Just after a tick starts, so the next one sees all three changes at once.
        ticks = _tick_started(daemon)
        wait_for(lambda: _tick_started(daemon) > ticks, 30, "a sensor tick")
        time.sleep(2)
        changed_at = time.monotonic()
        with mail_user.session("INBOX") as client:
            client.create("Archive")
            client.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
            client.expunge()
            client.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
            assert client.uid("MOVE", "3", "Archive")[0] == "OK"

        def mirrored() -> bool:
            folders = {row["folder"] for row in store.rows_in_partition(message_locations, "work", today.isoformat())}
            return (
                store.count(raw_messages, "work", ten.isoformat()) == 0
                and store.flags_by_message("work", five.isoformat()) == {before_key(five): {"\\Flagged"}}
                and folders == {"INBOX", "Archive"}
                and len(instance.get_runs()) > len(first_runs)
                and all(run.is_finished for run in instance.get_runs())
            )

        def before_key(day: dt.date) -> str:
            return next(m["message_key"] for m in before["metadatas"] if m["day"] == day.isoformat())

        wait_for(mirrored, 120, f"changes mirrored\n{daemon.log_tail()}")
        seconds = time.monotonic() - changed_at
    later_runs = [run for run in instance.get_runs() if run.run_id not in {r.run_id for r in first_runs}]
    assert len(later_runs) == 1 and later_runs[0].status == dg.DagsterRunStatus.SUCCESS, [r.tags for r in later_runs]
    assert later_runs[0].tags["email_assets/trigger"] == "highwater"
    print(f"server changes mirrored in {seconds:.1f} s (one tick of 15 s at most, then one run)")

    after = vectors.collection.get(include=["embeddings", "metadatas"])
    by_id = dict(zip(after["ids"], after["metadatas"], strict=True))
    # Expunged: gone from every table and from Chroma.
    expunged_key = before_key(ten)
    assert all(m["message_key"] != expunged_key for m in after["metadatas"])
    for table in (raw_messages, message_locations, parsed_emails, cleaned_texts, chunks):
        assert store.count(table, "work", ten.isoformat()) == 0, table.name
    # Flagged: metadata follows, the vector and the chunk row are the ones of the first run.
    flagged_ids = [chunk for chunk, m in by_id.items() if m["message_key"] == before_key(five)]
    assert flagged_ids and all(by_id[chunk]["flagged"] and not by_id[chunk]["seen"] for chunk in flagged_ids)
    first_vectors = dict(zip(before["ids"], before["embeddings"], strict=True))
    second_vectors = dict(zip(after["ids"], after["embeddings"], strict=True))
    for chunk in flagged_ids:
        assert list(first_vectors[chunk]) == list(second_vectors[chunk])
        assert by_id[chunk]["run_id"] == first_runs[0].run_id  # not re-embedded by the later run
    # Moved: one stored message, one location (in Archive), its chunks unchanged.
    moved = [row for row in store.rows_in_partition(message_locations, "work", today.isoformat())]
    assert sorted((row["folder"], row["uid"]) for row in moved) == [("Archive", 1), ("INBOX", 4)]
    assert store.count(raw_messages, "work", today.isoformat()) == 2
    today_chunks = sorted(chunk for chunk, m in by_id.items() if m["day"] == today.isoformat())
    assert today_chunks == sorted(
        chunk for chunk in before["ids"] if chunk in by_id and by_id[chunk]["day"] == today.isoformat()
    )
    assert len(today_chunks) == 2
    assert len(after["ids"]) == len(before["ids"]) - 1


def test_mail_outside_the_partitions_never_stops_the_sensor_for_the_others(dovecot, instance, project_env) -> None:
    """Retention 0: one account's mail starts in 2019 (before the partitions), another's server
    dates a message 2099. Every tick still requests runs for everything else."""
    day, later = dt.date(2026, 11, 20), dt.date(2026, 11, 22)
    users = {name: _new_user(dovecot, name) for name in ("old", "future", "work")}
    users["old"].append([(message("ancient", "From 2019."), utc(dt.date(2019, 3, 1))), (message("a", "A."), utc(day))])
    users["future"].append([(message("f", "F."), utc(day))])  # creates the maildir deliver() writes to
    users["future"].deliver(message("ahead", "A clock far ahead."), utc(dt.date(2099, 1, 1)))
    users["work"].append([(message("w", "W."), utc(day))])
    for name, user in users.items():
        assert add_account(user, name) == 0

    def embedded(names: list[str], on: dt.date) -> bool:
        return {str(partition_key(name, on)) for name in names} <= embedded_partitions(instance)

    with DagsterDaemon(project_env / "dagster_home", env={"EMAIL_ASSETS_SENSOR_INTERVAL_SECONDS": "5"}) as daemon:
        wait_for(lambda: embedded(list(users), day), 400, f"first sync of every account\n{daemon.log_tail()}")
        users["work"].append([(message("later", "Later."), utc(later))])  # a later tick, past the odd mail
        wait_for(lambda: embedded(["work"], later), 300, f"work's new mail\n{daemon.log_tail()}")
        wait_for(lambda: finished_runs(instance), 60, "runs finished")
        log = daemon.log_path.read_text(errors="replace")
    assert "DagsterUnknownPartitionError" not in log
    assert "2019-03-01" in log and "2099-01-01" in log  # said once, with what would include it
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in instance.get_runs())
    assert {key.split("|")[1] for key in embedded_partitions(instance)} == {day.isoformat(), later.isoformat()}
