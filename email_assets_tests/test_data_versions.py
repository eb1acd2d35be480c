"""Data versions derived from content: "stale" in the UI means the data really moved."""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from email_assets.defs.materialize import materialize_partitions
from email_assets.defs.partitions import partition_key
from email_assets_tests.conftest import add_account, message, utc

DAY, OTHER = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
DOWNSTREAM = ["parsed_emails", "cleaned_text", "email_embeddings"]


def statuses(instance: dg.DagsterInstance, defs: dg.Definitions, day: dt.date) -> dict[str, str]:
    resolver = _resolver(instance, defs)
    key = str(partition_key("work", day))
    return {name: resolver.get_status(dg.AssetKey(name), key).value for name in ["raw_messages", *DOWNSTREAM]}


def _resolver(instance: dg.DagsterInstance, defs: dg.Definitions) -> CachingStaleStatusResolver:
    """What the UI's "stale" badge is computed by (Dagster's own test helper builds it)."""
    return get_stale_status_resolver(instance, [defs.get_assets_def(name) for name in ["raw_messages", *DOWNSTREAM]])


def raw_only(instance: dg.DagsterInstance, defs: dg.Definitions, day: dt.date) -> None:
    result = dg.materialize(
        [defs.get_assets_def("raw_messages")],
        instance=instance,
        partition_key=str(partition_key("work", day)),
        resources=defs.resources,
        selection=["raw_messages"],
    )
    assert result.success


def test_new_mail_marks_that_days_downstream_stale_and_nothing_else(mail_user, instance) -> None:
    from email_assets.definitions import defs

    mail_user.append([(message("first", "First."), utc(DAY)), (message("other", "Other."), utc(OTHER))])
    assert add_account(mail_user, "work") == 0
    assert all(result.success for result in materialize_partitions(instance, "work", [DAY, OTHER]))
    fresh = {name: "FRESH" for name in ["raw_messages", *DOWNSTREAM]}
    assert statuses(instance, defs, DAY) == fresh

    raw_only(instance, defs, DAY)  # nothing new on the server: same content, same version
    assert statuses(instance, defs, DAY) == fresh

    mail_user.append([(message("second", "Second."), utc(DAY, 15))])
    raw_only(instance, defs, DAY)
    after = statuses(instance, defs, DAY)
    assert after["raw_messages"] == "FRESH"
    assert after["parsed_emails"] == StaleStatus.STALE.value
    resolver = _resolver(instance, defs)
    causes = resolver.get_stale_causes(dg.AssetKey("parsed_emails"), str(partition_key("work", DAY)))
    assert [(c.dependency.asset_key.path[0] if c.dependency else None, c.reason) for c in causes][:1] == [
        ("raw_messages", "has a new dependency data version")
    ]
    assert statuses(instance, defs, OTHER) == fresh  # the other day did not move


def test_a_cleaner_version_bump_marks_cleaned_text_then_embeddings_stale(mail_user, instance, monkeypatch) -> None:
    from email_assets import pipeline
    from email_assets.definitions import defs

    mail_user.append([(message("first", "First."), utc(DAY))])
    assert add_account(mail_user, "work") == 0
    assert materialize_partitions(instance, "work", [DAY])[0].success
    monkeypatch.setattr(pipeline, "CLEANER_VERSION", pipeline.CLEANER_VERSION + "-next")  # a new cleaner
    bumped = defs.get_assets_def("cleaned_text").map_asset_specs(
        lambda spec: spec.replace_attributes(code_version=pipeline.CLEANER_VERSION)
    )
    assets = [defs.get_assets_def(name) for name in ("raw_messages", "parsed_emails", "email_embeddings")]
    key = str(partition_key("work", DAY))

    def now() -> dict[str, str]:
        resolver = get_stale_status_resolver(instance, [*assets, bumped])
        return {name: resolver.get_status(dg.AssetKey(name), key).value for name in ["raw_messages", *DOWNSTREAM]}

    assert now() == {
        "raw_messages": "FRESH",
        "parsed_emails": "FRESH",
        "cleaned_text": "STALE",
        "email_embeddings": "FRESH",
    }
    # Re-cleaned under the new version: its content version moves, so the embeddings are behind.
    result = dg.materialize([bumped], instance=instance, partition_key=key, resources=defs.resources)
    assert result.success
    assert now() == {
        "raw_messages": "FRESH",
        "parsed_emails": "FRESH",
        "cleaned_text": "FRESH",
        "email_embeddings": "STALE",
    }
