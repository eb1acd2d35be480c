"""Account x day partitions shared by all four assets.

The date dimension ends one day after the last complete day (`end_offset=1`) so that
today's partition exists: the sensor materializes today's mail as it arrives.
"""

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from email_assets import settings
from email_assets.errors import ConfigurationError

ACCOUNTS = "accounts"
# Set on every run the sensor, the schedule and `email-assets backfill` launch: the run queue
# limits runs per account by it (range runs carry no `dagster/partition/account` tag).
ACCOUNT_TAG = "email_assets/account"
# Also on every run the project launches: a run whose worker host died (power, network, OOM
# of the whole worker) stays STARTED forever, holding its account's queue slots; Dagster's
# run monitoring fails it once it has run this long. Six hours is many times a 31-day range
# run of a large mailbox; the instance's `run_monitoring.max_runtime_seconds` covers runs
# launched from the UI.
MAX_RUNTIME_TAG = "dagster/max_runtime"
MAX_RUN_SECONDS = 6 * 3600
RUN_LIMIT_TAGS = {MAX_RUNTIME_TAG: str(MAX_RUN_SECONDS)}

account_partitions = dg.DynamicPartitionsDefinition(name=ACCOUNTS)
day_partitions = dg.DailyPartitionsDefinition(start_date=settings.start_date(), timezone="UTC", end_offset=1)
account_day_partitions = dg.MultiPartitionsDefinition({"account": account_partitions, "date": day_partitions})


def partition_days(now: dt.datetime | None = None) -> tuple[dt.date, dt.date]:
    """The first and last day the date dimension holds at `now`: its start date through today."""
    keys = day_partitions.get_partition_keys(current_time=now)  # end_offset=1: today is the last
    if not keys:
        start = day_partitions.start.date()
        raise ConfigurationError(f"EMAIL_ASSETS_START_DATE {start} is after today: the day partitions are empty")
    return dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1])


def outside_partitions(days: Iterable[dt.date], now: dt.datetime | None = None) -> list[dt.date]:
    """The days no partition holds: mail older than the start date or dated in the future.

    A run requested for such a day fails Dagster's key validation, and in a sensor that
    fails the whole tick for every account, so callers drop these days and say why.
    """
    first, last = partition_days(now)
    return sorted(day for day in days if not first <= day <= last)


def partition_key(account: str, day: dt.date | str) -> dg.MultiPartitionKey:
    day_text = day.isoformat() if isinstance(day, dt.date) else day
    return dg.MultiPartitionKey({"account": account, "date": day_text})


def split_partition_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(account, ISO day) of a key such as `work|2026-11-20`."""
    if isinstance(key, dg.MultiPartitionKey):
        return key.keys_by_dimension["account"], key.keys_by_dimension["date"]
    account, day = str(key).split("|")
    return account, day


def range_tags(account: str, first_day: dt.date, last_day: dt.date, last_account: str | None = None) -> dict[str, str]:
    """Tags that make a run cover a key range, plus the account tag the run queue limits on."""
    return {
        "dagster/asset_partition_range_start": str(partition_key(account, first_day)),
        "dagster/asset_partition_range_end": str(partition_key(last_account or account, last_day)),
        ACCOUNT_TAG: account if last_account in (None, account) else f"{account}..{last_account}",
    }
