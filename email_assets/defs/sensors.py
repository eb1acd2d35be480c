"""`mailbox_highwater_sensor`: new mail within a minute, runs only for partitions that changed.

The cursor is JSON `{account: {folder: {uidvalidity, uidnext}}}`. Each tick asks every
account's folders STATUS (short timeouts, errors captured per account) and requests one
run per account and span of days with new mail (a range run when the span is longer than
a day: a new account's history is one run, not one per day), with a run_key derived from
the new high-water marks, so a repeated tick never doubles a run. It also registers the dynamic partition of
any account added while DAGSTER_HOME was not reachable. Starts RUNNING: an operator who
added an account expects its mail to arrive without another switch.
"""

import asyncio
import hashlib
import json
import time

import dagster as dg

from email_assets import settings
from email_assets.account_access import endpoint_of, login_secret
from email_assets.defs.jobs import email_sync_job
from email_assets.defs.partitions import ACCOUNTS, account_partitions
from email_assets.defs.resources import CredentialsResource, MailStoreResource
from email_assets.defs.run_requests import sync_requests
from email_assets.errors import UserError
from email_assets.mail.highwater import HighwaterChange, detect_new_mail
from email_assets.mail.imap_connect import connect, without_secret
from email_assets.storage.accounts import Account
from email_assets.storage.connection_slots import ConnectionSlots, SlotsBusyError

TICK_BUDGET_SECONDS = 40
STATUS_TIMEOUT_SECONDS = 10


async def _account_change(account: Account, secret: str, previous: dict) -> HighwaterChange:
    endpoint = endpoint_of(account, timeout=STATUS_TIMEOUT_SECONDS)
    async with connect(
        endpoint, account.username, secret, account.mechanism, attempts=1
    ) as session:  # next tick retries
        folders = account.folders or await session.default_folders()
        return await detect_new_mail(session, folders, previous)


@dg.sensor(
    job=email_sync_job,
    minimum_interval_seconds=settings.sensor_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls STATUS UIDVALIDITY/UIDNEXT of every account's folders and syncs the days with new mail.",
)
def mailbox_highwater_sensor(
    context: dg.SensorEvaluationContext, mail_store: MailStoreResource, credentials: CredentialsResource
) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else {}
    accounts = mail_store.accounts().list()
    registered = set(context.instance.get_dynamic_partitions(ACCOUNTS))
    missing = [account.name for account in accounts if account.name not in registered]
    window = settings.RetentionWindow(settings.retention_days())
    run_requests: list[dg.RunRequest] = []
    started = time.monotonic()
    box = credentials.secret_box() if accounts else None
    slots = ConnectionSlots(mail_store.url())
    store = mail_store.messages()
    health = mail_store.accounts()
    failed: list[str] = []
    for account in accounts:
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            context.log.warning("tick budget spent; remaining accounts are checked next tick")
            break
        previous = cursor.get(account.name, {})
        secret = ""
        try:
            secret = login_secret(account, box)
            # No waiting for a busy account: a running sync is about to see the new mail anyway.
            with slots.hold(account.name, account.max_connections, wait_seconds=0):
                change = asyncio.run(_account_change(account, secret, previous))
        except SlotsBusyError:
            context.log.info(f"{account.name}: all its connections are in use by runs; checked next tick")
            continue
        except UserError as error:
            # The reason goes to the tick, the log and the accounts table: never the secret,
            # whatever a server echoes back.
            reason = without_secret(str(error), secret) if secret else str(error)
            context.log.warning(f"{account.name}: {reason}")
            health.record_failure(account.name, reason)
            failed.append(f"{account.name} ({reason})")
            continue
        health.record_reachable(account.name)
        cursor[account.name] = change.marks
        marks = hashlib.sha256(json.dumps(change.marks, sort_keys=True).encode()).hexdigest()[:16]
        days = set(change.days)
        for folder in change.resynced_folders:  # stored days of a folder whose UIDs are void
            days |= store.location_days(account.name, folder)
        kept = [day for day in days if window.keeps(day)]
        run_requests.extend(sync_requests(account.name, kept, marks, trigger="highwater"))
    if failed and not run_requests:  # shown on the tick instead of a bare "0 runs requested"
        skip_reason = f"could not reach {len(failed)} of {len(accounts)} account(s): " + "; ".join(failed)
    else:
        skip_reason = None
    return dg.SensorResult(
        run_requests=run_requests,
        skip_reason=skip_reason[:1000] if skip_reason else None,
        cursor=json.dumps(cursor, sort_keys=True),
        dynamic_partitions_requests=[account_partitions.build_add_request(missing)] if missing else [],
    )
