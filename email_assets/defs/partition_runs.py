"""One asset step over any set of account x day partitions: a single day or a range run.

A backfill (policy `multi_run`, at most `settings.max_days_per_run()` partitions a run) and
the sensor's ranged requests hand a step many partitions at once, possibly of several
accounts. Dagster records one materialization per partition, but metadata, check results
and blocking would be per step unless reported per partition; this module does that:
numbers through `add_asset_metadata(partition_key=...)`, checks as `AssetCheckEvaluation`s
carrying their partition, and a failed blocking check failing the step after every
partition has been reported, so downstream steps of the run are skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

# Not re-exported by `dagster`; it links a check result to the materialization it judged, so
# the UI shows the result as current for that partition.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from email_assets.defs.partitions import partition_key, split_partition_key


def days_by_account(context: dg.AssetExecutionContext) -> dict[str, list[str]]:
    """The run's partitions grouped by account, days in order (one entry for a one-day run)."""
    grouped: dict[str, list[str]] = {}
    for key in context.partition_keys:
        account, day = split_partition_key(key)
        grouped.setdefault(account, []).append(day)
    return {account: sorted(days) for account, days in sorted(grouped.items())}


def combined_version(fingerprints: Mapping[tuple[str, str], str]) -> dg.DataVersion:
    """The step's data version: one value for all its partitions (Dagster takes one per step).

    For a one-day run it is that partition's content hash, so re-running an unchanged day
    keeps it and new mail changes it.
    """
    if len(fingerprints) == 1:
        return dg.DataVersion(next(iter(fingerprints.values())))
    digest = hashlib.sha256()
    for (account, day), value in sorted(fingerprints.items()):
        digest.update(f"{account}|{day}={value};".encode())
    return dg.DataVersion(digest.hexdigest()[:24])


@dataclass
class PartitionReports:
    """What a step found, partition by partition, turned into Dagster events at the end."""

    context: dg.AssetExecutionContext
    metadata: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    checks: dict[tuple[str, str], list[dg.AssetCheckResult]] = field(default_factory=dict)
    fingerprints: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(
        self,
        account: str,
        day: str,
        metadata: dict[str, Any],
        checks: Sequence[dg.AssetCheckResult],
        fingerprint: str,
    ) -> None:
        self.metadata[(account, day)] = metadata
        self.checks[(account, day)] = list(checks)
        self.fingerprints[(account, day)] = fingerprint

    def events(self) -> Iterator[dg.MaterializeResult | dg.Output | dg.AssetCheckEvaluation]:
        """The materialization (with per-partition numbers), then each partition's checks."""
        context = self.context
        for (account, day), metadata in self.metadata.items():
            context.add_asset_metadata(metadata, partition_key=str(partition_key(account, day)))
        totals = _totals(self.metadata.values()) if len(self.metadata) > 1 else {}
        yield dg.MaterializeResult(metadata=totals, data_version=combined_version(self.fingerprints))
        selected = {key.name: key for key in context.selected_asset_check_keys}
        specs = {spec.name: spec for spec in context.assets_def.check_specs if spec.name in selected}
        for spec in specs.values():  # each check's output, which downstream checks' steps wait on
            yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(spec.key))
        for (account, day), results in self.checks.items():
            key = str(partition_key(account, day))
            target = _latest_materialization(context, key) if specs else None
            for result in results:
                spec = specs.get(result.check_name)
                if spec is None:
                    continue
                yield dg.AssetCheckEvaluation(
                    asset_key=spec.asset_key,
                    check_name=spec.name,
                    passed=result.passed,
                    metadata=result.metadata,
                    severity=result.severity,
                    description=result.description,
                    blocking=spec.blocking,
                    partition=key,
                    target_materialization_data=target,
                )


def _latest_materialization(
    context: dg.AssetExecutionContext, key: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The materialization this step just recorded for `key` (events are stored as yielded)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.assets_def.key, asset_partitions=[key]), limit=1
    ).records
    if not records:
        return None
    record = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
    )


def _totals(per_partition: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sums over the run, under `run_*` names so they never mask a partition's own number."""
    totals: dict[str, int] = {}
    count = 0
    for metadata in per_partition:
        count += 1
        for name, value in metadata.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[f"run_{name}"] = totals.get(f"run_{name}", 0) + value
    return {"run_partitions": count, **totals}


def fingerprint(items: Mapping[str, Any]) -> str:
    """A content hash of a partition's rows (key -> version or hash), order-free."""
    digest = hashlib.sha256()
    for key in sorted(items):
        digest.update(f"{key}={items[key]!r};".encode())
    return digest.hexdigest()[:24]
