"""Jobs: the four-asset sync used by the sensor and schedule, and the daily retention purge."""

import datetime as dt

import dagster as dg

from email_assets import pipeline
from email_assets.defs.resources import ChromaResource, EmbeddingResource, MailStoreResource

email_sync_job = dg.define_asset_job(
    name="email_sync_job",
    selection=["raw_messages", "parsed_emails", "cleaned_text", "email_embeddings"],
    description="Fetch, parse, clean and embed one account x day partition.",
)


@dg.op(description="Delete mail older than EMAIL_ASSETS_RETENTION_DAYS from every table and from Chroma.")
def purge_expired_mail(
    context: dg.OpExecutionContext,
    mail_store: MailStoreResource,
    embedding: EmbeddingResource,
    chroma: ChromaResource,
) -> dg.Output[None]:
    window = mail_store.retention_window()
    oldest = window.oldest_kept()
    if oldest is None:
        context.log.info("EMAIL_ASSETS_RETENTION_DAYS is 0: everything is kept")
        return dg.Output(None, metadata={"deleted_messages": 0})
    vectors = chroma.vectors(embedding.embedder().model_name)
    deleted = pipeline.purge_before(mail_store.messages(), vectors, oldest.isoformat())
    context.log.info(f"deleted before {oldest}: {deleted}")
    return dg.Output(
        None,
        metadata={
            "cutoff": oldest.isoformat(),
            "deleted_messages": deleted["raw_messages"],
            "deleted_chunks": deleted["chunks"],
        },
    )


@dg.job(description="Daily: remove mail older than the retention window from the tables and Chroma.")
def retention_job() -> None:
    purge_expired_mail()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    job=retention_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
