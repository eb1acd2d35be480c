"""Date-range backfills of one account: the same object the UI's "Materialize" dialog creates.

`launch_backfill` records an asset backfill in the instance under DAGSTER_HOME; the
daemon's backfill loop cuts it into runs by the assets' `BackfillPolicy` (at most
`settings.max_days_per_run()` days a run) and launches them through the run queue, so it
shows on the UI's Backfills page with its runs and partitions, like one started there.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.utils import make_new_backfill_id

from email_assets.defs.partitions import ACCOUNT_TAG, ACCOUNTS, partition_key
from email_assets.errors import UserError

ASSETS = ["raw_messages", "parsed_emails", "cleaned_text", "email_embeddings"]


@dataclass(frozen=True)
class BackfillProgress:
    backfill_id: str
    status: str
    runs: int
    runs_succeeded: int
    runs_failed: int
    partitions: int
    partitions_done: int

    @property
    def finished(self) -> bool:
        return self.status not in {"REQUESTED", "CANCELING", "FAILING"}

    def describe(self) -> str:
        return (
            f"backfill {self.backfill_id}: {self.status.lower()}, "
            f"{self.partitions_done}/{self.partitions} partitions done, "
            f"{self.runs} runs ({self.runs_succeeded} succeeded, {self.runs_failed} failed)"
        )


def launch_backfill(instance: dg.DagsterInstance, account: str, since: dt.date, until: dt.date) -> str:
    """Record the backfill of `account` over `since..until` (inclusive); returns its id."""
    from email_assets.definitions import defs

    if until < since:
        raise UserError(f"--until {until} is before --since {since}")
    if not instance.has_dynamic_partition(ACCOUNTS, account):
        raise UserError(f"no partition for account {account!r} in this instance: run `email-assets accounts add` first")
    days = [since + dt.timedelta(days=n) for n in range((until - since).days + 1)]
    backfill_id = make_new_backfill_id()
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id,
        asset_graph=defs.resolve_asset_graph(),
        partition_names=[str(partition_key(account, day)) for day in days],
        asset_selection=[dg.AssetKey(name) for name in ASSETS],
        backfill_timestamp=time.time(),
        tags={ACCOUNT_TAG: account, "email_assets/trigger": "backfill"},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"{account} {since}..{until}",
        description=f"email-assets backfill {account} --since {since} --until {until}",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill_id


def backfill_progress(instance: dg.DagsterInstance, backfill_id: str) -> BackfillProgress:
    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        raise UserError(f"no backfill {backfill_id!r} in this instance")
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
    data = backfill.asset_backfill_data
    last = dg.AssetKey(ASSETS[-1])  # a partition is done when its embeddings are
    wanted = data.target_subset.get_asset_subset(last) if data else None
    done = data.materialized_subset.get_asset_subset(last) if data else None
    return BackfillProgress(
        backfill_id=backfill_id,
        status=backfill.status.value,
        runs=len(runs),
        runs_succeeded=sum(run.status == dg.DagsterRunStatus.SUCCESS for run in runs),
        runs_failed=sum(run.status == dg.DagsterRunStatus.FAILURE for run in runs),
        partitions=wanted.size if wanted is not None else 0,
        partitions_done=done.size if done is not None else 0,
    )


def follow_backfill(
    instance: dg.DagsterInstance,
    backfill_id: str,
    report: Callable[[BackfillProgress], None],
    poll_seconds: float = 2.0,
    timeout_seconds: float | None = None,
) -> BackfillProgress:
    """Report progress whenever it changes, until the backfill is finished (or the timeout)."""
    started = time.monotonic()
    shown = None
    while True:
        progress = backfill_progress(instance, backfill_id)
        if progress != shown:
            report(progress)
            shown = progress
        if progress.finished or (timeout_seconds is not None and time.monotonic() - started > timeout_seconds):
            return progress
        time.sleep(poll_seconds)
