"""Asset checks, evaluated for each partition a materialization wrote.

They are declared as partitioned `check_specs` on the assets and computed in the same
step, so each result belongs to exactly one account x day partition and shows up next to
it in the UI, also in a range run (`partition_runs` reports them per partition). The
integrity checks are blocking: bytes that no longer match their hash, or a parsed table
that lost messages, must not be built upon; the others report without stopping the run.
"""

import hashlib
import re

import dagster as dg

from email_assets.defs.partitions import account_day_partitions
from email_assets.pipeline import StepReport
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import chunks, cleaned_texts, parsed_emails, raw_messages
from email_assets.storage.vectors import VectorStore

EMPTY_TEXT_WARN_SHARE = 0.2
DEFECT_WARN_SHARE = 0.5
# Bounded: `[^>]*` made the search quadratic on a `<p` with no `>` (4-9 s per 100 KB).
_LEFTOVER_TAG = re.compile(r"<(?:html|body|div|span|p|table|td|tr|style|script|img|a|br|font)\b[^<>]{0,500}>", re.I)
_LEFTOVER_BASE64 = re.compile(r"[A-Za-z0-9+/]{120,}")


def leftover_markup(text: str) -> bool:
    """An HTML tag or a base64 run that cleaning should have removed."""
    return bool(_LEFTOVER_TAG.search(text) or _LEFTOVER_BASE64.search(text))

RAW_CHECKS = [
    dg.AssetCheckSpec(
        "raw_bytes_intact",
        asset="raw_messages",
        partitions_def=account_day_partitions,
        blocking=True,
        description="Every stored message's bytes still hash to its recorded SHA-256 and size.",
    ),
    dg.AssetCheckSpec(
        "all_messages_fetched",
        asset="raw_messages",
        partitions_def=account_day_partitions,
        description="Every message of the day found on the server was downloaded.",
    ),
]
PARSED_CHECKS = [
    dg.AssetCheckSpec(
        "every_raw_message_parsed",
        asset="parsed_emails",
        partitions_def=account_day_partitions,
        blocking=True,
        description="One parsed row per raw message, no more, no less.",
    ),
    dg.AssetCheckSpec(
        "parse_failures_and_defects",
        asset="parsed_emails",
        partitions_def=account_day_partitions,
        description="No message failed to parse; warns when many carry defects.",
    ),
]
CLEANED_CHECKS = [
    dg.AssetCheckSpec(
        "no_html_or_base64_left",
        asset="cleaned_text",
        partitions_def=account_day_partitions,
        description="Cleaned text holds no HTML tags and no base64 runs.",
    ),
    dg.AssetCheckSpec(
        "empty_text_share",
        asset="cleaned_text",
        partitions_def=account_day_partitions,
        description=f"Warns when more than {EMPTY_TEXT_WARN_SHARE:.0%} of messages have no text.",
    ),
]
EMBEDDING_CHECKS = [
    dg.AssetCheckSpec(
        "vectors_match_chunks",
        asset="email_embeddings",
        partitions_def=account_day_partitions,
        description="Chroma holds exactly the partition's chunks: none missing, no orphans.",
    ),
    dg.AssetCheckSpec(
        "every_message_embedded",
        asset="email_embeddings",
        partitions_def=account_day_partitions,
        description="Every message with text has at least one chunk.",
    ),
]


def raw_check_results(store: MessageStore, account: str, day: str, failures: int) -> list[dg.AssetCheckResult]:
    corrupt = []
    for row in store.raw_in_partition(account, day, missing_ok=True):
        raw = row["raw"]
        if raw is None or hashlib.sha256(raw).hexdigest() != row["sha256"] or len(raw) != row["size"]:
            corrupt.append(row["message_key"])
    return [
        dg.AssetCheckResult(
            check_name="raw_bytes_intact",
            passed=not corrupt,
            metadata={"corrupt": len(corrupt), "examples": ", ".join(corrupt[:5])},
        ),
        dg.AssetCheckResult(check_name="all_messages_fetched", passed=failures == 0, metadata={"failures": failures}),
    ]


def parsed_check_results(store: MessageStore, account: str, day: str, report: StepReport) -> list[dg.AssetCheckResult]:
    raw = store.count(raw_messages, account, day)
    with_defects = report.extra.get("with_defects", 0)
    defect_share = with_defects / report.messages if report.messages else 0.0
    return [
        dg.AssetCheckResult(
            check_name="every_raw_message_parsed",
            passed=raw == report.messages,
            metadata={"raw": raw, "parsed": report.messages},
        ),
        dg.AssetCheckResult(
            check_name="parse_failures_and_defects",
            passed=report.failures == 0 and defect_share <= DEFECT_WARN_SHARE,
            severity=dg.AssetCheckSeverity.ERROR if report.failures else dg.AssetCheckSeverity.WARN,
            metadata={"failures": report.failures, "with_defects": with_defects, "defect_share": defect_share},
        ),
    ]


def cleaned_check_results(store: MessageStore, account: str, day: str, report: StepReport) -> list[dg.AssetCheckResult]:
    leftovers = []
    for row in store.rows_in_partition(cleaned_texts, account, day, columns=("message_key", "text")):
        if leftover_markup(row["text"]):
            leftovers.append(row["message_key"])
    parsed = store.count(parsed_emails, account, day)
    empty = report.extra.get("empty", 0)
    share = empty / report.messages if report.messages else 0.0
    return [
        dg.AssetCheckResult(
            check_name="no_html_or_base64_left",
            passed=not leftovers,
            metadata={"messages_with_leftovers": len(leftovers), "examples": ", ".join(leftovers[:5])},
        ),
        dg.AssetCheckResult(
            check_name="empty_text_share",
            passed=share <= EMPTY_TEXT_WARN_SHARE and parsed == report.messages,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"empty": empty, "share": share, "parsed": parsed, "cleaned": report.messages},
        ),
    ]


def embedding_check_results(
    store: MessageStore, vectors: VectorStore, account: str, day: str, report: StepReport
) -> list[dg.AssetCheckResult]:
    in_table = set(store.chunk_ids_in_partition(account, day, vectors.collection_name))
    in_chroma = set(vectors.collection.get(where={"$and": [{"account": account}, {"day": day}]}, include=[])["ids"])
    stored_chunks = store.count(chunks, account, day, chunks.c.collection == vectors.collection_name)
    return [
        dg.AssetCheckResult(
            check_name="vectors_match_chunks",
            passed=in_table == in_chroma and stored_chunks == report.extra.get("chunks", 0),
            metadata={
                "chunks": len(in_table),
                "vectors": len(in_chroma),
                "missing_vectors": len(in_table - in_chroma),
                "orphan_vectors": len(in_chroma - in_table),
            },
        ),
        dg.AssetCheckResult(
            check_name="every_message_embedded", passed=report.failures == 0, metadata={"failures": report.failures}
        ),
    ]
