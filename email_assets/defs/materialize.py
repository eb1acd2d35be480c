"""Materialize account x day partitions in this process, recorded in a Dagster instance.

Used by `make demo` and the tests: the same job the sensor and schedule launch, run
in-process so there is no daemon to wait for, and visible in `dagster dev` afterwards.
"""

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from email_assets.defs.partitions import ACCOUNTS, partition_key, range_tags


def materialize_partitions(
    instance: dg.DagsterInstance,
    account: str,
    days: Iterable[dt.date],
    raise_on_error: bool = True,
    log_level: str = "INFO",
) -> list[dg.ExecuteInProcessResult]:
    from email_assets.definitions import defs

    if not instance.has_dynamic_partition(ACCOUNTS, account):
        instance.add_dynamic_partitions(ACCOUNTS, [account])
    job = defs.resolve_job_def("email_sync_job")
    return [
        job.execute_in_process(
            partition_key=partition_key(account, day),
            instance=instance,
            raise_on_error=raise_on_error,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        for day in days
    ]


def materialize_range(
    instance: dg.DagsterInstance,
    account: str,
    first_day: dt.date,
    last_day: dt.date,
    raise_on_error: bool = True,
    last_account: str | None = None,
) -> dg.ExecuteInProcessResult:
    """One run over `account|first_day .. last_account|last_day`, as a backfill run takes it."""
    from email_assets.definitions import defs

    job = defs.resolve_job_def("email_sync_job")
    return job.execute_in_process(
        instance=instance,
        raise_on_error=raise_on_error,
        tags=range_tags(account, first_day, last_day, last_account),
    )
