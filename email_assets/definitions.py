"""The code location: every asset, check, job, sensor, schedule and resource, in one place."""

from __future__ import annotations

import dagster as dg

from email_assets.defs.assets import cleaned_text, email_embeddings, parsed_emails, raw_messages
from email_assets.defs.automation import email_automation_sensor
from email_assets.defs.jobs import email_sync_job, retention_job, retention_schedule
from email_assets.defs.resources import RESOURCES
from email_assets.defs.schedules import email_sync_schedule
from email_assets.defs.sensors import mailbox_highwater_sensor

__all__ = ["RESOURCES", "defs"]

defs = dg.Definitions(
    assets=[raw_messages, parsed_emails, cleaned_text, email_embeddings],
    jobs=[email_sync_job, retention_job],
    sensors=[mailbox_highwater_sensor, email_automation_sensor],
    schedules=[email_sync_schedule, retention_schedule],
    resources=RESOURCES,
    # Steps run one after another in the run's process: the four assets are a chain, so a
    # process per step (the default) bought no parallelism and cost an interpreter start and
    # imports per step; parsing and cleaning spread over the cores themselves (`parallel`).
    executor=dg.in_process_executor,
)
