"""Downstream follows upstream on any day, without the job: declarative automation.

`email_sync_job` materializes all four assets together, but a user may re-materialize
`raw_messages` alone for an old day (from the UI, after a fix). Dagster's `eager()`
acts only on each account's latest day (it includes `in_latest_time_window()`), so that
part is dropped: any partition whose upstream was updated by a run that did not also
build it is requested, unless upstream is missing or in progress, or one of its blocking
checks failed. New mail itself is still noticed by `mailbox_highwater_sensor`.
"""

import dagster as dg

from email_assets.defs.partitions import RUN_LIMIT_TAGS

FOLLOWS_UPSTREAM = (
    dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("follows upstream on any day")

DOWNSTREAM = ["parsed_emails", "cleaned_text", "email_embeddings"]

email_automation_sensor = dg.AutomationConditionSensorDefinition(
    "email_automation_sensor",
    target=dg.AssetSelection.assets(*DOWNSTREAM),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    run_tags=RUN_LIMIT_TAGS,
    description="Brings parsed_emails, cleaned_text and email_embeddings up to date with whatever upstream moved.",
)
