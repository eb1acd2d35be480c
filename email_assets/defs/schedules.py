"""`email_sync_schedule`: every 2 hours, one run over yesterday and today for every account.

A safety net under the sensor (a missed tick, a server that did not bump UIDNEXT); cheap
because a partition with nothing new costs one SEARCH per folder and no downloads.
"""

import datetime as dt

import dagster as dg

from email_assets.defs.jobs import email_sync_job
from email_assets.defs.partitions import ACCOUNTS, outside_partitions
from email_assets.defs.run_requests import sync_requests


@dg.schedule(
    job=email_sync_job,
    cron_schedule="0 */2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def email_sync_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    today = context.scheduled_execution_time.astimezone(dt.UTC).date()
    stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
    requests = []
    for account in context.instance.get_dynamic_partitions(ACCOUNTS):
        days = [today - dt.timedelta(days=1), today]
        days = sorted(set(days) - set(outside_partitions(days, context.scheduled_execution_time)))
        requests.extend(sync_requests(account, days, stamp, trigger="schedule"))
    return requests
