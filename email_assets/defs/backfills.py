"""Date-range backfills of one account: the same object the UI's "Materialize" dialog creates.

`launch_backfill` records an asset backfill in the instance under DAGSTER_HOME; the
daemon's backfill loop cuts it into runs by the assets' `BackfillPolicy` (at most
`settings.max_days_per_run()` days a run) and launches them through the run queue, so it
shows on the UI's Backfills page with its runs and partitions, like one started there.

Days outside the day partitions are refused before anything is recorded: the daemon would
fail such a backfill with a traceback, and a far-off `--until` costs minutes and gigabytes
to enumerate. `--wait` watches the daemon's heartbeats, so it never waits on nobody.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.utils import make_new_backfill_id

from email_assets.defs.partitions import ACCOUNT_TAG, ACCOUNTS, RUN_LIMIT_TAGS, partition_days, partition_key
from email_assets.errors import UserError

ASSETS = ["raw_messages", "parsed_emails", "cleaned_text", "email_embeddings"]
BACKFILL_DAEMON = "BACKFILL"  # the daemon type that cuts backfills into runs
# A running daemon beats every 30 s (Dagster's interval); three without one and it is not running.
HEARTBEAT_FRESH_SECONDS = 3 * 30
DAEMON_NOTE_SECONDS = 3.0  # say so this soon when no daemon is seen...
DAEMON_GRACE_SECONDS = 60.0  # ...and give up after this long: one just started may be loading
FAILED_RUNS_SHOWN = 3


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


def check_backfill_days(since: dt.date, until: dt.date) -> None:
    """Refuse, in one line, a range that is empty or reaches beyond the day partitions."""
    if until < since:
        raise UserError(f"--until {until} is before --since {since}")
    first, last = partition_days()
    if since < first or until > last:
        outside = f"--since {since}" if since < first else f"--until {until}"
        raise UserError(
            f"{outside} is outside the day partitions, which hold {first}..{last} "
            "(the first day is EMAIL_ASSETS_START_DATE, else the first the EMAIL_ASSETS_RETENTION_DAYS "
            "window keeps; the last is today, UTC)"
        )


def launch_backfill(instance: dg.DagsterInstance, account: str, since: dt.date, until: dt.date) -> str:
    """Record the backfill of `account` over `since..until` (inclusive); returns its id."""
    from email_assets.definitions import defs

    check_backfill_days(since, until)
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
        tags={ACCOUNT_TAG: account, "email_assets/trigger": "backfill", **RUN_LIMIT_TAGS},
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


def daemon_is_beating(instance: dg.DagsterInstance, now: float | None = None) -> bool:
    """Whether a dagster-daemon running backfills wrote a heartbeat to this instance lately."""
    heartbeat = instance.get_daemon_heartbeats().get(BACKFILL_DAEMON)
    return heartbeat is not None and (now or time.time()) - heartbeat.timestamp <= HEARTBEAT_FRESH_SECONDS


def no_daemon_message(instance: dg.DagsterInstance, backfill_id: str, waited: float) -> str:
    """One line for a backfill nobody runs: which instance, and how to start the daemon."""
    return (
        f"no dagster-daemon heartbeat in this instance (DAGSTER_HOME {instance.root_directory}) "
        f"for {waited:.0f} s: backfill {backfill_id} is recorded and runs once `dagster-daemon run` "
        "(or `dagster dev`) is started with this DAGSTER_HOME"
    )


def follow_backfill(
    instance: dg.DagsterInstance,
    backfill_id: str,
    report: Callable[[BackfillProgress], None],
    poll_seconds: float = 2.0,
    timeout_seconds: float | None = None,
    note: Callable[[str], None] | None = None,
) -> BackfillProgress:
    """Report progress whenever it changes, until the backfill is finished (or the timeout).

    Without a daemon's heartbeat, `note` hears of it after DAEMON_NOTE_SECONDS and the wait
    ends in a `UserError` after DAEMON_GRACE_SECONDS (a daemon started just now has that
    long to load the code location and beat).
    """
    started = time.monotonic()
    shown = None
    noted = False
    while True:
        progress = backfill_progress(instance, backfill_id)
        if progress != shown:
            report(progress)
            shown = progress
        waited = time.monotonic() - started
        if progress.finished or (timeout_seconds is not None and waited > timeout_seconds):
            return progress
        if not daemon_is_beating(instance):
            if waited >= DAEMON_GRACE_SECONDS:
                raise UserError(no_daemon_message(instance, backfill_id, waited))
            if note is not None and not noted and waited >= DAEMON_NOTE_SECONDS:
                note(f"note: {no_daemon_message(instance, backfill_id, waited)}; waiting {DAEMON_GRACE_SECONDS:.0f} s")
                noted = True
        time.sleep(min(poll_seconds, DAEMON_NOTE_SECONDS))


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:300] if lines else ""


def _root_message(error: Any) -> str:  # dagster's SerializableErrorInfo (private module)
    """The first line of the innermost cause: Dagster wraps the asset's own exception in a
    step execution error whose first line names only the step."""
    while error.cause is not None:
        error = error.cause
    return _first_line(error.message)


def _first_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first line of a failed run's first step failure (else of its run failure)."""
    for event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
        for record in instance.get_records_for_run(run_id, of_type=event_type, limit=1).records:
            event = record.event_log_entry.dagster_event
            error = getattr(event.event_specific_data, "error", None) if event else None
            text = _root_message(error) if error is not None else _first_line(record.event_log_entry.message)
            if text:
                return text
    return "no error recorded"


def failure_summary(instance: dg.DagsterInstance, progress: BackfillProgress) -> str:
    """One line for a backfill that did not succeed: its own error, its failed runs and why."""
    backfill = instance.get_backfill(progress.backfill_id)
    parts = []
    if backfill is not None and backfill.error is not None:
        parts.append(f"the daemon reported: {_root_message(backfill.error)}")
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            tags={BACKFILL_ID_TAG: progress.backfill_id},
            statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
        )
    )
    for run in reversed(runs[-FAILED_RUNS_SHOWN:]):  # newest first from storage: show the oldest
        verb = "failed" if run.status == dg.DagsterRunStatus.FAILURE else "was canceled"
        parts.append(f"run {run.run_id} {verb}: {_first_error(instance, run.run_id)}")
    if len(runs) > FAILED_RUNS_SHOWN:
        parts.append(f"and {len(runs) - FAILED_RUNS_SHOWN} more failed runs")
    return f"backfill {progress.backfill_id} ended {progress.status.lower()}" + (
        ": " + "; ".join(parts) if parts else ""
    )
