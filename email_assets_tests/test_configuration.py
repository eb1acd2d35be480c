"""Configuration through Dagster: resources set from `dg.EnvVar`, no secret in run config or events."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import sqlalchemy as sa

from email_assets.defs.resources import RESOURCES, configured_resources
from email_assets.storage.database import engine_for
from email_assets.storage.tables import raw_messages
from email_assets_tests.conftest import add_account, message, utc

DAY = dt.date(2026, 11, 20)
VARIABLES = {
    ("mail_store", "database_url"): "EMAIL_ASSETS_DATABASE_URL",
    ("mail_store", "retention_days"): "EMAIL_ASSETS_RETENTION_DAYS",
    ("mail_store", "keep_expunged"): "EMAIL_ASSETS_KEEP_EXPUNGED",
    ("credentials", "fernet_keys"): "EMAIL_ASSETS_FERNET_KEYS",
    ("embedding", "spec"): "EMAIL_ASSETS_EMBEDDER",
    ("chroma", "location"): "EMAIL_ASSETS_CHROMA",
}


def test_each_field_is_its_env_var_by_name_or_left_to_its_default(monkeypatch) -> None:
    for name in VARIABLES.values():
        monkeypatch.delenv(name, raising=False)
    unset = configured_resources()
    assert all(getattr(unset[resource], field) is None for resource, field in VARIABLES)
    for name in VARIABLES.values():
        monkeypatch.setenv(name, "value-of-" + name)
    configured = configured_resources()
    for (resource, field), name in VARIABLES.items():
        value = getattr(configured[resource], field)
        assert isinstance(value, dg.EnvVar) and value.env_var_name == name  # the name, never the value


def test_a_run_reads_its_configuration_from_env_vars_and_records_no_secret(
    mail_user, instance, project_env, monkeypatch
) -> None:
    from email_assets.defs.assets import cleaned_text, email_embeddings, parsed_emails
    from email_assets.defs.assets import raw_messages as raw_asset
    from email_assets.defs.jobs import email_sync_job
    from email_assets.defs.partitions import partition_key

    url = f"sqlite:///{project_env / 'elsewhere.sqlite'}"
    monkeypatch.setenv("EMAIL_ASSETS_DATABASE_URL", url)
    monkeypatch.setenv("EMAIL_ASSETS_KEEP_EXPUNGED", "1")
    mail_user.append([(message("kept", "A note to keep."), utc(DAY))])
    assert add_account(mail_user, "work") == 0
    defs = dg.Definitions(
        assets=[raw_asset, parsed_emails, cleaned_text, email_embeddings],
        jobs=[email_sync_job],
        resources=configured_resources(),
        executor=dg.in_process_executor,
    )
    instance.add_dynamic_partitions("accounts", ["work"])
    job = defs.resolve_job_def("email_sync_job")
    result = job.execute_in_process(partition_key=str(partition_key("work", DAY)), instance=instance)
    assert result.success
    with engine_for(url).connect() as connection:  # the configured database, not the default one
        assert connection.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar_one() == 1

    mail_user.expunge("1")  # EMAIL_ASSETS_KEEP_EXPUNGED=1 reached the step through the resource
    assert job.execute_in_process(partition_key=str(partition_key("work", DAY)), instance=instance).success
    with engine_for(url).connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar_one() == 1

    keys = instance.get_run_by_id(result.run_id).run_config
    recorded = json.dumps(keys) + "".join(
        str(record.event_log_entry) for record in instance.get_records_for_run(result.run_id).records
    )
    fernet_keys = __import__("os").environ["EMAIL_ASSETS_FERNET_KEYS"]
    assert fernet_keys not in recorded and url not in json.dumps(keys)


def test_the_embedding_code_version_is_the_configured_embedders() -> None:
    from email_assets.definitions import defs

    version = defs.get_assets_def("email_embeddings").code_versions_by_key[dg.AssetKey("email_embeddings")]
    assert version == RESOURCES["embedding"].code_version()
    assert version.endswith("all-MiniLM-L6-v2") or "+" in version
