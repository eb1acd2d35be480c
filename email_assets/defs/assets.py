"""The four assets: raw_messages -> parsed_emails -> cleaned_text -> email_embeddings.

Each asset is a thin wrapper over one `pipeline` step. A run may carry one account x day
partition or a range of them (a backfill, a new account's history): the step loops over
the run's partitions in one process, with one IMAP session per account and the model
loaded once, and reports numbers, a content-derived data version and check results per
partition (`partition_runs`). Data moves through the project's tables, not an IO manager,
so each asset depends on the one before by `deps`.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from email_assets import pipeline, settings
from email_assets.account_access import login_secret
from email_assets.defs import checks
from email_assets.defs.automation import FOLLOWS_UPSTREAM
from email_assets.defs.partition_runs import PartitionReports, days_by_account, fingerprint
from email_assets.defs.partitions import account_day_partitions
from email_assets.defs.resources import (
    RESOURCES,
    ChromaResource,
    CredentialsResource,
    EmbeddingResource,
    MailStoreResource,
)
from email_assets.errors import UserError
from email_assets.mail.cleaning import CLEANER_VERSION
from email_assets.mail.parsing import PARSER_VERSION
from email_assets.mail.sync import SyncReport
from email_assets.storage.tables import cleaned_texts
from email_assets.storage.tables import parsed_emails as parsed_emails_table
from email_assets.storage.tables import raw_messages as raw_messages_table

SYNC_VERSION = "sync-1"
GROUP = "email"
# A backfill of a year is 12 runs of a month, each restartable on its own.
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.max_days_per_run())
StepEvents = Iterator[dg.MaterializeResult | dg.Output | dg.AssetCheckEvaluation]


def _step_metadata(report: pipeline.StepReport) -> dict[str, int]:
    return {
        "messages": report.messages,
        "failures": report.failures,
        "processed": report.processed,
        "reused": report.reused,
        "removed": report.removed,
        **report.extra,
    }


@dg.asset(
    partitions_def=account_day_partitions,
    group_name=GROUP,
    kinds={"imap", "sql"},
    code_version=SYNC_VERSION,
    check_specs=checks.RAW_CHECKS,
    backfill_policy=BACKFILL_POLICY,
)
def raw_messages(
    context: dg.AssetExecutionContext, mail_store: MailStoreResource, credentials: CredentialsResource
) -> StepEvents:
    """RFC 822 bytes exactly as served, with their IMAP coordinates (folder, UIDVALIDITY,
    UID, INTERNALDATE, flags) and a content hash, for the messages whose INTERNALDATE falls
    on the partition's UTC day. Only messages not yet stored are downloaded; messages gone
    from the server are removed."""
    store = mail_store.messages()
    accounts = mail_store.accounts()
    window = mail_store.retention_window()
    reports = PartitionReports(context)
    for account_name, days in days_by_account(context).items():
        kept = [day for day in days if window.keeps(dt.date.fromisoformat(day))]
        if len(kept) < len(days):
            context.log.info(f"{len(days) - len(kept)} day(s) outside the {window.days}-day retention window")
        sync = SyncReport()  # stays empty for days outside the retention window
        if kept:
            try:
                account = accounts.get(account_name)
                sync = pipeline.sync_account_days(
                    account,
                    login_secret(account, credentials.secret_box()),
                    store,
                    [dt.date.fromisoformat(day) for day in kept],
                    context.run.run_id,
                    context.log.info,
                    keep_expunged=mail_store.keeps_expunged(),
                )
            except UserError as error:
                accounts.record_failure(account_name, str(error))
                raise dg.Failure(description=str(error)) from None
            accounts.record_success(account_name)
        for day in days:
            failures = sync.failures.get(day, 0)
            reports.add(
                account_name,
                day,
                {
                    "messages": store.count(raw_messages_table, account_name, day),
                    "failures": failures,
                    "fetched": sync.fetched.get(day, 0),
                    "linked_by_server_id": sync.linked.get(day, 0),
                    "bytes": sync.bytes.get(day, 0),
                    "removed": sync.removed.get(day, 0),
                    "flags_changed": sync.flags_changed.get(day, 0),
                    "stored_bytes": store.partition_bytes(account_name, day),
                },
                checks.raw_check_results(store, account_name, day, failures),
                fingerprint(store.raw_summary(account_name, day)),
            )
    yield from reports.events()


@dg.asset(
    partitions_def=account_day_partitions,
    group_name=GROUP,
    kinds={"python", "sql"},
    code_version=PARSER_VERSION,
    deps=[raw_messages],
    check_specs=checks.PARSED_CHECKS,
    backfill_policy=BACKFILL_POLICY,
    automation_condition=FOLLOWS_UPSTREAM,
)
def parsed_emails(context: dg.AssetExecutionContext, mail_store: MailStoreResource) -> StepEvents:
    """Decoded headers (subject, from, to, cc, date, Message-ID, In-Reply-To, References,
    thread), text and HTML bodies, attachment metadata and parse defects, one row per raw
    message. A message that cannot be parsed is a row with its reason, never a crash."""
    store = mail_store.messages()
    reports = PartitionReports(context)
    for account_name, days in days_by_account(context).items():
        for day in days:
            report = pipeline.parse_partition(store, account_name, day, context.run.run_id)
            versions = store.versions_in_partition(
                parsed_emails_table, ("raw_sha256", "code_version"), account_name, day
            )
            reports.add(
                account_name,
                day,
                _step_metadata(report),
                checks.parsed_check_results(store, account_name, day, report),
                fingerprint(versions),
            )
    yield from reports.events()


@dg.asset(
    partitions_def=account_day_partitions,
    group_name=GROUP,
    kinds={"python", "sql"},
    code_version=CLEANER_VERSION,
    deps=[parsed_emails],
    check_specs=checks.CLEANED_CHECKS,
    backfill_policy=BACKFILL_POLICY,
    automation_condition=FOLLOWS_UPSTREAM,
)
def cleaned_text(context: dg.AssetExecutionContext, mail_store: MailStoreResource) -> StepEvents:
    """Retrieval-ready text: HTML turned into text, quoted replies, signatures and base64
    runs removed (and kept aside for lineage), whitespace normalized."""
    store = mail_store.messages()
    reports = PartitionReports(context)
    for account_name, days in days_by_account(context).items():
        for day in days:
            report = pipeline.clean_partition(store, account_name, day, context.run.run_id)
            versions = store.versions_in_partition(
                cleaned_texts, ("code_version", "upstream_version"), account_name, day
            )
            parsed = store.versions_in_partition(parsed_emails_table, "raw_sha256", account_name, day)
            reports.add(
                account_name,
                day,
                _step_metadata(report),
                checks.cleaned_check_results(store, account_name, day, report),
                fingerprint({key: (version, parsed.get(key)) for key, version in versions.items()}),
            )
    yield from reports.events()


@dg.asset(
    partitions_def=account_day_partitions,
    group_name=GROUP,
    kinds={"chroma"},
    code_version=RESOURCES["embedding"].code_version(),
    deps=[cleaned_text],
    check_specs=checks.EMBEDDING_CHECKS,
    backfill_policy=BACKFILL_POLICY,
    automation_condition=FOLLOWS_UPSTREAM,
)
def email_embeddings(
    context: dg.AssetExecutionContext,
    mail_store: MailStoreResource,
    embedding: EmbeddingResource,
    chroma: ChromaResource,
) -> StepEvents:
    """Token-sized chunks of the cleaned text, embedded and upserted into Chroma with ids
    derived from message and content, each carrying provenance metadata (message, model,
    code version, run). Unchanged chunks keep their vectors; orphans are deleted."""
    store = mail_store.messages()
    reports = PartitionReports(context)
    try:
        embedder = embedding.embedder()  # loaded once for every partition of the run
        vectors = chroma.vectors(embedder.model_name)
        for account_name, days in days_by_account(context).items():
            for day in days:
                report = pipeline.embed_partition(store, vectors, embedder, account_name, day, context.run.run_id)
                metadata = {**_step_metadata(report), "embedded": report.processed}
                chunk_ids = store.chunk_ids_in_partition(account_name, day, vectors.collection_name)
                reports.add(
                    account_name,
                    day,
                    {**metadata, "embedding_model": embedder.model_name, "collection": vectors.collection_name},
                    checks.embedding_check_results(store, vectors, account_name, day, report),
                    fingerprint(chunk_ids),
                )
    except UserError as error:
        raise dg.Failure(description=str(error)) from None
    yield from reports.events()
