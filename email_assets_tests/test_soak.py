"""A bounded soak: mail keeps arriving while `dagster-daemon` runs the sensor and its runs.

For SOAK_SECONDS a writer appends a message every few seconds, over several days, to two
folders; the daemon's sensor (polling every SENSOR_SECONDS) requests runs as the marks
move, and runs of the same account overlap with new arrivals and with each other. When
the writer stops and the last run is done, every message is in every asset exactly once,
with its exact bytes, and no secret is anywhere in the daemon's log or the event log.
On SQLite (tables and Dagster storage) and on PostgreSQL (both too).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import shutil
import threading
import time
from collections import Counter

import dagster as dg
import pytest
import sqlalchemy as sa

from email_assets import settings
from email_assets.demo.daemon import DagsterDaemon, wait_for
from email_assets.embedding import embedder_from_spec
from email_assets.storage.database import engine_for
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import chunks, cleaned_texts, parsed_emails, raw_messages
from email_assets.storage.vectors import VectorStore
from email_assets_tests.conftest import PROJECT_ROOT, add_account, message, record_reliability, utc

pytestmark = [pytest.mark.daemon, pytest.mark.slow]

SOAK_SECONDS = 75
SENSOR_SECONDS = 10
DAYS = [dt.date(2026, 11, 24) + dt.timedelta(days=n) for n in range(4)]


@pytest.fixture(params=["sqlite", "postgres"])
def soak_env(request, project_env, monkeypatch) -> str:
    monkeypatch.setenv("EMAIL_ASSETS_SENSOR_INTERVAL_SECONDS", str(SENSOR_SECONDS))
    if request.param == "postgres":
        server, tables_db, dagster_db = request.getfixturevalue("postgres_databases")
        monkeypatch.setenv("EMAIL_ASSETS_DATABASE_URL", f"postgresql+psycopg://{server}/{tables_db}")
        monkeypatch.setenv("EMAIL_ASSETS_DAGSTER_PG_URL", f"postgresql+psycopg2://{server}/{dagster_db}")
        shutil.copy(PROJECT_ROOT / "deploy" / "postgres" / "dagster.yaml", project_env / "dagster_home")
    return request.param


def _writer(mail_user, stop: threading.Event, sent: list[bytes]) -> None:
    rng = random.Random(7)
    number = 0
    while not stop.is_set():
        day = rng.choice(DAYS)
        folder = "INBOX" if number % 3 else "Archive"
        raw = message(f"soak {number}", f"Arrival {number} for {day}, while the daemon syncs.")
        mail_user.append([(raw, utc(day, rng.randrange(24), rng.randrange(60)))], folder=folder)
        sent.append(raw)
        number += 1
        stop.wait(rng.uniform(0.5, 2.5))


def test_mail_arriving_during_a_soak_is_ingested_exactly_once(mail_user, soak_env, project_env) -> None:
    mail_user.append([(message("before", "Already there."), utc(DAYS[0]))], folder="Archive")
    sent = [message("before", "Already there.")]
    assert add_account(mail_user, "work", ["--folders", "INBOX,Archive"]) == 0
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(mail_user, stop, sent))
    with DagsterDaemon(project_env / "dagster_home") as daemon, dg.DagsterInstance.get() as instance:
        writer.start()
        time.sleep(SOAK_SECONDS)
        stop.set()
        writer.join()
        store = MessageStore(settings.database_url())

        def all_in() -> bool:
            runs = instance.get_runs()
            done = runs and all(run.is_finished for run in runs)
            return bool(done and _count(store, chunks) == len(sent))

        wait_for(all_in, 180, f"{len(sent)} messages embedded\n{daemon.log_tail()}", poll=2)
        runs = instance.get_runs()
        events = instance.get_records_for_run(runs[0].run_id).records
        log_text = daemon.log_path.read_text(errors="replace") + "".join(
            str(record.event_log_entry) for run in runs for record in instance.get_records_for_run(run.run_id).records
        )
        assert events

    expected = Counter(hashlib.sha256(raw).hexdigest() for raw in sent)
    with engine_for(settings.database_url()).connect() as connection:
        stored = Counter(connection.execute(sa.select(raw_messages.c.sha256)).scalars())
    record_reliability(
        f"soak on {soak_env} ({len(runs)} runs)",
        cases=len(sent),
        lost=sum((expected - stored).values()),
        duplicated=sum((stored - expected).values()),
        leaked=int(mail_user.password in log_text),
        crashed=sum(run.status != dg.DagsterRunStatus.SUCCESS for run in runs),
    )
    assert len(sent) >= SOAK_SECONDS // 3
    assert len(runs) >= 3  # several ticks requested runs while mail kept arriving
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [r.status for r in runs]
    assert stored == expected  # every message once, with its exact bytes
    for table in (parsed_emails, cleaned_texts, chunks):
        assert _count(store, table) == len(sent), table.name
    vectors = VectorStore(settings.chroma_location(), embedder_from_spec("local").model_name)
    ids = vectors.collection.get(include=[])["ids"]
    assert len(ids) == len(set(ids)) == len(sent)
    assert mail_user.password not in log_text


def _count(store: MessageStore, table: sa.Table) -> int:
    return sum(store.count(table, "work", day.isoformat()) for day in DAYS)
