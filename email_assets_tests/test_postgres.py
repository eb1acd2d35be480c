"""The same pipeline with the project's tables and Dagster's storage on PostgreSQL.

Uses the server at 127.0.0.1:5432 (trust auth) when one answers, else a throwaway
cluster the suite starts itself; each test creates and drops its own databases, so
nothing is shared with other runs.
"""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa

from email_assets.defs.materialize import materialize_partitions
from email_assets.search import search_messages
from email_assets.storage.database import engine_for
from email_assets.storage.lexical import LexicalIndex, MessageFilter
from email_assets.storage.tables import chunks, message_locations, parsed_emails, raw_messages
from email_assets_tests.conftest import PROJECT_ROOT, add_account, message, utc
from email_assets_tests.postgres_server import MACHINE_SERVER, answers, throwaway_cluster

DAY = dt.date(2026, 11, 20)


def test_pipeline_on_postgres_tables_and_dagster_storage(mail_user, project_env, postgres_databases, monkeypatch):
    server, tables_db, dagster_db = postgres_databases
    monkeypatch.setenv("EMAIL_ASSETS_DATABASE_URL", f"postgresql+psycopg://{server}/{tables_db}")
    monkeypatch.setenv("EMAIL_ASSETS_DAGSTER_PG_URL", f"postgresql+psycopg2://{server}/{dagster_db}")
    dagster_home = project_env / "dagster_home"
    shutil.copy(PROJECT_ROOT / "deploy" / "postgres" / "dagster.yaml", dagster_home / "dagster.yaml")
    hard = message("Ünïcode 8-bit", "naïve café body\r\n\r\n-- \r\nsig", extra_headers="X-Null: a\r\n")
    mail_user.append([(message("pg one", "first body"), utc(DAY)), (hard, utc(DAY, 13))])
    assert add_account(mail_user, "work") == 0

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        first = materialize_partitions(instance, "work", [DAY])[0]
        assert first.success
        second = materialize_partitions(instance, "work", [DAY])[0]
        assert second.success
        assert instance.get_run_by_id(first.run_id).tags["dagster/partition/account"] == "work"
        materializations = instance.fetch_materializations(dg.AssetKey("raw_messages"), limit=10).records
        assert len(materializations) == 2

    engine = engine_for(f"postgresql+psycopg://{server}/{tables_db}")
    assert engine.dialect.name == "postgresql"
    with engine.connect() as connection:
        raw = connection.execute(sa.select(raw_messages.c.raw)).scalars().all()
        assert sorted(raw) == sorted([message("pg one", "first body"), hard])
        assert connection.execute(sa.select(sa.func.count()).select_from(message_locations)).scalar_one() == 2
        assert connection.execute(sa.select(sa.func.count()).select_from(chunks)).scalar_one() == 2
        hard_key = connection.execute(
            sa.select(parsed_emails.c.message_key).where(parsed_emails.c.subject == "Ünïcode 8-bit")
        ).scalar_one()
    # Words are found through PostgreSQL full text (a weighted tsvector), and hybrid search uses it.
    index = LexicalIndex(f"postgresql+psycopg://{server}/{tables_db}")
    assert index.count() == 2
    assert [key for key, _ in index.search("cafés naïve", 5, MessageFilter())] == [hard_key]
    assert index.search("café", 5, MessageFilter(account="other")) == []
    [best, *_] = search_messages("naïve café", k=2)
    assert best["message_key"] == hard_key and best["subject"] == "Ünïcode 8-bit"
    # Flags filter both sides of search on PostgreSQL too: the table's LIKE and Chroma's metadata.
    mail_user.flag("2", "\\Flagged")
    with dg.DagsterInstance.get() as instance:
        assert materialize_partitions(instance, "work", [DAY])[0].success
    assert [key for key, _ in index.search("body", 5, MessageFilter(flagged=True))] == [hard_key]
    assert len(index.search("body", 5, MessageFilter(seen=False))) == 2
    assert [hit["message_key"] for hit in search_messages("body", k=5, where=MessageFilter(flagged=True))] == [hard_key]


@pytest.mark.postgres  # starts a cluster of its own: initdb and pg_ctl
def test_throwaway_cluster_when_no_server_answers() -> None:
    """The fallback a machine without a PostgreSQL on 5432 takes: a real cluster, started and removed."""
    with throwaway_cluster() as server:
        assert server != MACHINE_SERVER and answers(server)
        with psycopg.connect(f"postgresql://{server}/postgres", autocommit=True) as connection:
            assert connection.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    assert not answers(server)
