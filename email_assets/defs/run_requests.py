"""Run requests for days of one account: one run per span of days, not one run per day.

A new account's history, a folder whose UIDVALIDITY changed, or many days with new mail
become range runs of at most `settings.max_days_per_run()` days each, so a 30-day mailbox
is one run (one IMAP session, the model loaded once) instead of thirty. Days far apart are
not bridged by a long span of idle days: a span starts again when the next day is too far.
Every run carries `ACCOUNT_TAG`, on which the run queue limits runs per account, and a
maximum run time (`RUN_LIMIT_TAGS`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from email_assets import settings
from email_assets.defs.partitions import ACCOUNT_TAG, RUN_LIMIT_TAGS, partition_key, range_tags


def day_spans(days: Iterable[dt.date], max_days: int) -> list[tuple[dt.date, dt.date]]:
    """Sorted days cut into (first, last) spans no longer than `max_days` days."""
    spans: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if spans and (day - spans[-1][0]).days < max_days:
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def sync_requests(account: str, days: Iterable[dt.date], run_key: str, trigger: str) -> list[dg.RunRequest]:
    requests = []
    for first, last in day_spans(days, settings.max_days_per_run()):
        key = f"{account}|{first.isoformat()}..{last.isoformat()}|{run_key}"
        tags = {"email_assets/trigger": trigger, **RUN_LIMIT_TAGS}
        if first == last:
            requests.append(
                dg.RunRequest(
                    run_key=key, partition_key=partition_key(account, first), tags={**tags, ACCOUNT_TAG: account}
                )
            )
        else:
            requests.append(dg.RunRequest(run_key=key, tags={**tags, **range_tags(account, first, last)}))
    return requests
