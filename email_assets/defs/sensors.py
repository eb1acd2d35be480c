"""`mailbox_highwater_sensor`: new mail, expunges and flag changes within a tick, runs only
for the partitions they touch.

The cursor is JSON `{account: {folder: {uidvalidity, uidnext, messages, highestmodseq,
swept_at}}, "_polled": {account: unix time}}`. Each tick polls the accounts (`polling`:
concurrent, per-call timeouts, least recently polled first) and asks each folder what
changed (`mail.changes`: STATUS, then CONDSTORE/QRESYNC or the fallback). It requests one
run per account and span of days that changed, with a run_key derived from the new
marks, so a repeated tick never doubles a run. It also registers the dynamic partition
of any account added while DAGSTER_HOME was not reachable. Starts RUNNING: an operator who
added an account expects its mail to arrive without another switch.
"""

import datetime as dt
import hashlib
import json

import dagster as dg

from email_assets import settings
from email_assets.account_access import login_secret
from email_assets.defs.jobs import email_sync_job
from email_assets.defs.partitions import ACCOUNTS, account_partitions, outside_partitions, partition_days
from email_assets.defs.resources import CredentialsResource, MailStoreResource
from email_assets.defs.run_requests import sync_requests
from email_assets.polling import poll_accounts
from email_assets.storage.connection_slots import ConnectionSlots

TICK_BUDGET_SECONDS = 40
POLLED = "_polled"  # not an account name: those start with a letter or digit
NO_ACCOUNTS = "no account registered yet: add one with `email-assets accounts add NAME ...`"


def describe_outside(days: list[dt.date]) -> str:
    """Why mail on `days` is not synced, and what would include it."""
    first, last = partition_days()
    shown = ", ".join(day.isoformat() for day in days[:3]) + (f" and {len(days) - 3} more" if len(days) > 3 else "")
    return (
        f"mail dated {shown} is outside the partitions ({first} to {last}) and is not synced; "
        "an earlier EMAIL_ASSETS_START_DATE includes older mail, mail dated in the future waits for its day"
    )


@dg.sensor(
    job=email_sync_job,
    minimum_interval_seconds=settings.sensor_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Polls every account's folders (STATUS; CONDSTORE/QRESYNC where offered) and syncs the days "
        "with new, expunged or re-flagged mail."
    ),
)
def mailbox_highwater_sensor(
    context: dg.SensorEvaluationContext, mail_store: MailStoreResource, credentials: CredentialsResource
) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else {}
    last_polled = cursor.pop(POLLED, {})
    accounts = mail_store.accounts().list()
    if not accounts:  # a new install before `accounts add`, or the last account removed
        return dg.SensorResult(skip_reason=NO_ACCOUNTS, cursor=context.cursor)
    registered = set(context.instance.get_dynamic_partitions(ACCOUNTS))
    missing = [account.name for account in accounts if account.name not in registered]
    window = mail_store.retention_window()
    store = mail_store.messages()
    health = mail_store.accounts()
    box = credentials.secret_box() if accounts else None
    polled = poll_accounts(
        accounts,
        cursor,
        last_polled,
        lambda account: login_secret(account, box),
        store,
        ConnectionSlots(mail_store.url()),
        TICK_BUDGET_SECONDS,
        settings.sensor_concurrency(),
        sweep_seconds=settings.flag_sweep_seconds(),
    )
    run_requests: list[dg.RunRequest] = []
    for name, reason in sorted(polled.failed.items()):
        context.log.warning(f"{name}: {reason}")
        health.record_failure(name, reason)
    health.record_reachable(*polled.changes)
    for name in polled.busy:
        context.log.info(f"{name}: all its connections are in use by runs; checked next tick")
    if polled.unreached:
        context.log.warning(f"tick budget spent; checked first next tick: {', '.join(sorted(polled.unreached))}")
    for name, changes in sorted(polled.changes.items()):
        cursor[name] = changes.marks
        marks = hashlib.sha256(json.dumps(changes.marks, sort_keys=True).encode()).hexdigest()[:16]
        days = set(changes.days)
        for folder in [*changes.resynced_folders, *changes.gone_folders]:  # stored days whose UIDs are void
            days |= store.location_days(name, folder)
        kept = [day for day in days if window.keeps(day)]
        if outside := outside_partitions(kept):
            kept = sorted(set(kept) - set(outside))
            context.log.warning(f"{name}: {describe_outside(outside)}")
        if kept:
            context.log.info(f"{name}: {changes.describe()} on {len(kept)} day(s)")
        run_requests.extend(sync_requests(name, kept, marks, trigger="highwater"))
    cursor[POLLED] = last_polled
    if polled.failed and not run_requests:  # shown on the tick instead of a bare "0 runs requested"
        failed = "; ".join(f"{name} ({reason})" for name, reason in sorted(polled.failed.items()))
        skip_reason = f"could not reach {len(polled.failed)} of {len(accounts)} account(s): {failed}"
    else:
        skip_reason = None
    return dg.SensorResult(
        run_requests=run_requests,
        skip_reason=skip_reason[:1000] if skip_reason else None,
        cursor=json.dumps(cursor, sort_keys=True),
        dynamic_partitions_requests=[account_partitions.build_add_request(missing)] if missing else [],
    )
