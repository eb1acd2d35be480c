"""The four assets: raw_messages -> parsed_emails -> cleaned_text -> email_embeddings.

Each asset is a thin wrapper over one `pipeline` step for one account x day partition:
it resolves resources, runs the step, and reports the numbers (as numbers, so the UI
plots them) and the partition's asset checks. Data moves through the project's tables,
not an IO manager, so each asset depends on the one before by `deps`.
"""

import datetime as dt

import dagster as dg

from email_assets import pipeline, settings
from email_assets.defs import checks
from email_assets.defs.partitions import account_day_partitions, split_partition_key
from email_assets.defs.resources import ChromaResource, CredentialsResource, EmbeddingResource, MailStoreResource
from email_assets.embedding import embedder_from_spec
from email_assets.errors import UserError
from email_assets.mail.chunking import CHUNKER_VERSION
from email_assets.mail.cleaning import CLEANER_VERSION
from email_assets.mail.parsing import PARSER_VERSION
from email_assets.storage.tables import raw_messages as raw_messages_table

SYNC_VERSION = "sync-1"
GROUP = "email"


def _embedding_code_version() -> str:
    try:
        return f"{CHUNKER_VERSION}+{embedder_from_spec(settings.embedder_spec()).model_name}"
    except UserError:
        return f"{CHUNKER_VERSION}+unconfigured"


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
)
def raw_messages(
    context: dg.AssetExecutionContext, mail_store: MailStoreResource, credentials: CredentialsResource
) -> dg.MaterializeResult:
    """RFC 822 bytes exactly as served, with their IMAP coordinates (folder, UIDVALIDITY,
    UID, INTERNALDATE, flags) and a content hash, for the messages whose INTERNALDATE falls
    on the partition's UTC day. Only messages not yet stored are downloaded; messages gone
    from the server are removed."""
    account_name, day = split_partition_key(context.partition_key)
    store = mail_store.messages()
    accounts = mail_store.accounts()
    window = settings.RetentionWindow(settings.retention_days())
    fetched = transferred = failures = removed = linked = 0
    if window.keeps(dt.date.fromisoformat(day)):
        try:
            account = accounts.get(account_name)
            secret = account.secret(credentials.secret_box())
            report = pipeline.sync_account_days(
                account,
                secret,
                store,
                [dt.date.fromisoformat(day)],
                context.run.run_id,
                context.log.info,
                keep_expunged=settings.keep_expunged(),
            )
        except UserError as error:
            accounts.record_failure(account_name, str(error))
            raise dg.Failure(description=str(error)) from None
        accounts.record_success(account_name)
        fetched, transferred = report.fetched[day], report.bytes[day]
        failures, removed, linked = report.failures[day], report.removed[day], report.linked[day]
    else:
        context.log.info(f"{day} is outside the {window.days}-day retention window: nothing fetched")
    messages = store.count(raw_messages_table, account_name, day)
    return dg.MaterializeResult(
        metadata={
            "messages": messages,
            "failures": failures,
            "fetched": fetched,
            "linked_by_server_id": linked,
            "bytes": transferred,
            "removed": removed,
            "stored_bytes": store.partition_bytes(account_name, day),
        },
        check_results=checks.raw_check_results(store, account_name, day, failures),
    )


@dg.asset(
    partitions_def=account_day_partitions,
    group_name=GROUP,
    kinds={"python", "sql"},
    code_version=PARSER_VERSION,
    deps=[raw_messages],
    check_specs=checks.PARSED_CHECKS,
)
def parsed_emails(context: dg.AssetExecutionContext, mail_store: MailStoreResource) -> dg.MaterializeResult:
    """Decoded headers (subject, from, to, cc, date, Message-ID, In-Reply-To, References,
    thread), text and HTML bodies, attachment metadata and parse defects, one row per raw
    message. A message that cannot be parsed is a row with its reason, never a crash."""
    account_name, day = split_partition_key(context.partition_key)
    store = mail_store.messages()
    report = pipeline.parse_partition(store, account_name, day, context.run.run_id)
    return dg.MaterializeResult(
        metadata=_step_metadata(report),
        check_results=checks.parsed_check_results(store, account_name, day, report),
    )


@dg.asset(
    partitions_def=account_day_partitions,
    group_name=GROUP,
    kinds={"python", "sql"},
    code_version=CLEANER_VERSION,
    deps=[parsed_emails],
    check_specs=checks.CLEANED_CHECKS,
)
def cleaned_text(context: dg.AssetExecutionContext, mail_store: MailStoreResource) -> dg.MaterializeResult:
    """Retrieval-ready text: HTML turned into text, quoted replies, signatures and base64
    runs removed (and kept aside for lineage), whitespace normalized."""
    account_name, day = split_partition_key(context.partition_key)
    store = mail_store.messages()
    report = pipeline.clean_partition(store, account_name, day, context.run.run_id)
    return dg.MaterializeResult(
        metadata=_step_metadata(report),
        check_results=checks.cleaned_check_results(store, account_name, day, report),
    )


@dg.asset(
    partitions_def=account_day_partitions,
    group_name=GROUP,
    kinds={"chroma"},
    code_version=_embedding_code_version(),
    deps=[cleaned_text],
    check_specs=checks.EMBEDDING_CHECKS,
)
def email_embeddings(
    context: dg.AssetExecutionContext,
    mail_store: MailStoreResource,
    embedding: EmbeddingResource,
    chroma: ChromaResource,
) -> dg.MaterializeResult:
    """Token-sized chunks of the cleaned text, embedded and upserted into Chroma with ids
    derived from message and content, each carrying provenance metadata (message, model,
    code version, run). Unchanged chunks keep their vectors; orphans are deleted."""
    account_name, day = split_partition_key(context.partition_key)
    store = mail_store.messages()
    try:
        embedder = embedding.embedder()
        vectors = chroma.vectors(embedder.model_name)
        report = pipeline.embed_partition(store, vectors, embedder, account_name, day, context.run.run_id)
    except UserError as error:
        raise dg.Failure(description=str(error)) from None
    metadata = _step_metadata(report)
    metadata["embedded"] = report.processed
    return dg.MaterializeResult(
        metadata={**metadata, "embedding_model": embedder.model_name, "collection": vectors.collection_name},
        check_results=checks.embedding_check_results(store, vectors, account_name, day, report),
    )
