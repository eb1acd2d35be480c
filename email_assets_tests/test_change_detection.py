"""The sensor finds expunges, flag changes and moves on old days, with and without QRESYNC.

Two real Dovecots: the session's, which offers CONDSTORE and QRESYNC, and one that
advertises neither (`imap_capability`), standing in for servers that can only be diffed.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from email_assets import settings
from email_assets.defs.materialize import materialize_partitions
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import chunks, raw_messages
from email_assets_tests.conftest import add_account, message, utc
from email_assets_tests.test_sensor_and_schedule import requested, tick

TODAY = dt.date(2026, 11, 20)
TEN_DAYS_AGO, FIVE_DAYS_AGO = TODAY - dt.timedelta(days=10), TODAY - dt.timedelta(days=5)


def _synced_three_days(user, instance):  # noqa: ANN001, ANN202
    """Mail on three days, synced: UIDs 1 (ten days ago), 2 (five days ago), 3 (today)."""
    user.append(
        [(message(f"note {day}", f"Minutes of {day}."), utc(day)) for day in (TEN_DAYS_AGO, FIVE_DAYS_AGO, TODAY)]
    )
    assert add_account(user, "work") == 0
    first = tick(instance, None)
    assert requested(first) == ["work|2026-11-10..work|2026-11-20"]
    assert all(
        result.success for result in materialize_partitions(instance, "work", [TEN_DAYS_AGO, FIVE_DAYS_AGO, TODAY])
    )
    quiet = tick(instance, first.cursor)
    assert requested(quiet) == []
    return quiet.cursor


def _flags(day: dt.date) -> list[str]:
    store = MessageStore(settings.database_url())
    return [flags for _key, flags in sorted(store.flags_by_message("work", day.isoformat()).items())]


def test_qresync_names_the_days_of_an_expunge_and_a_flag_change(mail_user, instance) -> None:
    cursor = _synced_three_days(mail_user, instance)
    assert json.loads(cursor)["work"]["INBOX"]["highestmodseq"] > 0
    mail_user.expunge("1")
    mail_user.flag("2", "\\Flagged")
    changed = tick(instance, cursor)
    # One run for the span of the two days (a range run is contiguous; see run_requests).
    assert requested(changed) == ["work|2026-11-10..work|2026-11-15"]
    assert requested(tick(instance, changed.cursor)) == []  # seen once, asked for once

    assert all(result.success for result in materialize_partitions(instance, "work", [TEN_DAYS_AGO, FIVE_DAYS_AGO]))
    store = MessageStore(settings.database_url())
    assert store.stored_locations("work", "INBOX", json.loads(cursor)["work"]["INBOX"]["uidvalidity"]).keys() == {2, 3}
    assert _flags(FIVE_DAYS_AGO) == [{"\\Flagged"}]


def test_a_flag_change_the_run_already_saw_asks_for_nothing(mail_user, instance) -> None:
    cursor = _synced_three_days(mail_user, instance)
    mail_user.flag("3", "\\Seen")
    assert materialize_partitions(instance, "work", [TODAY])[0].success  # the schedule got there first
    assert requested(tick(instance, cursor)) == []


def test_a_move_asks_for_the_day_in_both_folders(mail_user, instance) -> None:
    cursor = _synced_three_days(mail_user, instance)
    mail_user.move("2", "Archive")
    moved = tick(instance, cursor)
    assert requested(moved) == ["work|2026-11-15"]
    assert "Archive" in json.loads(moved.cursor)["work"]


def test_without_qresync_an_expunge_is_found_by_count_and_uid_diff(plain_mail_user, instance) -> None:
    cursor = _synced_three_days(plain_mail_user, instance)
    assert json.loads(cursor)["work"]["INBOX"]["highestmodseq"] == 0
    plain_mail_user.expunge("1")
    plain_mail_user.append([(message("late", "A late note."), utc(TODAY, 18))])  # count alone would miss it
    changed = tick(instance, cursor)
    assert requested(changed) == ["work|2026-11-10..work|2026-11-20"]
    assert requested(tick(instance, changed.cursor)) == []


def test_without_condstore_flags_are_swept_on_a_cadence(plain_mail_user, instance, monkeypatch) -> None:
    cursor = _synced_three_days(plain_mail_user, instance)
    plain_mail_user.flag("2", "\\Flagged")
    assert requested(tick(instance, cursor)) == []  # the hourly sweep is not due yet
    monkeypatch.setenv("EMAIL_ASSETS_FLAG_SWEEP_SECONDS", "0")
    swept = tick(instance, cursor)
    assert requested(swept) == ["work|2026-11-15"]
    assert json.loads(swept.cursor)["work"]["INBOX"]["swept_at"] > 0


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("EMAIL_ASSETS_FLAG_SWEEP_SECONDS", "-1", settings.flag_sweep_seconds),
        ("EMAIL_ASSETS_FLAG_SWEEP_SECONDS", "soon", settings.flag_sweep_seconds),
        ("EMAIL_ASSETS_SENSOR_CONCURRENCY", "0", settings.sensor_concurrency),
        ("EMAIL_ASSETS_SENSOR_CONCURRENCY", "many", settings.sensor_concurrency),
    ],
)
def test_a_bad_polling_setting_is_one_line(variable, value, read, monkeypatch) -> None:
    from email_assets.errors import ConfigurationError

    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"^{variable} must be a whole number"):
        read()


def test_search_filters_by_the_flags_the_server_has_now(mail_user, instance, capsys) -> None:
    from email_assets_tests.conftest import run_cli

    cursor = _synced_three_days(mail_user, instance)
    mail_user.flag("2", "\\Flagged")
    mail_user.flag("3", "\\Seen")
    changed = tick(instance, cursor)
    assert requested(changed) == ["work|2026-11-15..work|2026-11-20"]
    assert all(result.success for result in materialize_partitions(instance, "work", [FIVE_DAYS_AGO, TODAY]))
    capsys.readouterr()

    def subjects(*flags: str) -> list[str]:
        assert run_cli(["search", "minutes", "--json", "-k", "10", *flags]) == 0
        return sorted(json.loads(line)["subject"] for line in capsys.readouterr().out.splitlines())

    assert subjects("--flagged") == ["note 2026-11-15"]
    assert subjects("--unread") == ["note 2026-11-10", "note 2026-11-15"]
    assert subjects("--flagged", "--unread") == ["note 2026-11-15"]
    assert subjects() == ["note 2026-11-10", "note 2026-11-15", "note 2026-11-20"]


def test_a_folder_deleted_on_the_server_leaves_every_asset(mail_user, instance) -> None:
    mail_user.append([(message("filed", "Filed away."), utc(FIVE_DAYS_AGO))], folder="Projects")
    cursor = _synced_three_days(mail_user, instance)
    store = MessageStore(settings.database_url())
    assert "Projects" in store.stored_folders("work", [FIVE_DAYS_AGO])
    with mail_user.session() as client:
        assert client.delete("Projects")[0] == "OK"
    gone = tick(instance, cursor)
    assert requested(gone) == ["work|2026-11-15"]
    assert "Projects" not in json.loads(gone.cursor)["work"]
    assert materialize_partitions(instance, "work", [FIVE_DAYS_AGO])[0].success
    assert store.stored_folders("work", [FIVE_DAYS_AGO]) == {"INBOX"}
    assert store.count(raw_messages, "work", FIVE_DAYS_AGO.isoformat()) == 1
    assert store.count(chunks, "work", FIVE_DAYS_AGO.isoformat()) == 1
