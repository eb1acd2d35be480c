"""A run SIGKILLed anywhere, or two runs of one partition at once, end exactly where one clean run ends.

Each case syncs the same mailbox on Dovecot through all four assets: once cleanly (the
reference), and once killed at a named crash point (`email_assets.crash_points`) and run
again, or run twice at the same moment. The end state compared is every row of every
table (less run ids and fetch times), every vector in Chroma, and the raw bytes; the
re-run's asset checks must all pass. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from chromadb.api.client import SharedSystemClient

from email_assets import settings
from email_assets.defs.materialize import materialize_partitions
from email_assets.embedding import embedder_from_spec
from email_assets.storage import connection_slots
from email_assets.storage.connection_slots import ConnectionSlots
from email_assets.storage.database import engine_for
from email_assets.storage.messages import MessageStore, pack_directory
from email_assets.storage.tables import (
    chunks,
    cleaned_texts,
    message_locations,
    parsed_emails,
    raw_messages,
    search_documents,
)
from email_assets.storage.vectors import VectorStore
from email_assets_tests.conftest import add_account, message, record_reliability, utc

DAY = dt.date(2026, 11, 20)
MESSAGES = 600  # two FETCH batches (500 + 100), three embedding batches (256 + 256 + 88)
_VOLATILE = {"run_id", "fetched_at", "doc_id", "pack", "pack_offset", "raw"}
_RUN = (
    "import datetime as dt, dagster as dg\n"
    "from email_assets.defs.materialize import materialize_partitions\n"
    "with dg.DagsterInstance.get() as instance:\n"
    "    [result] = materialize_partitions(instance, 'work', [dt.date(2026, 11, 20)], log_level='ERROR')\n"
    "    raise SystemExit(0 if result.success else 1)\n"
)


def _mailbox() -> list[tuple[bytes, dt.datetime]]:
    topics = ["raid rebuild", "budget", "offsite", "kernel upgrade", "invoice", "hiring", "backup"]
    return [
        (
            message(f"Note {i} on {topics[i % 7]}", f"Message number {i} says something about {topics[i % 7]}."),
            utc(DAY, i % 24, i % 60),
        )
        for i in range(MESSAGES)
    ]


def _fresh_chroma() -> None:
    """Forget this process's embedded Chroma client: another process wrote the store since,
    and a run (a new process under Dagster) or a reader must see the store as it is on disk."""
    SharedSystemClient.clear_system_cache()


def _state() -> dict[str, object]:
    """Everything the four assets hold, without what legitimately differs between runs."""
    _fresh_chroma()
    url = settings.database_url()
    with engine_for(url).connect() as connection:
        tables = {
            table.name: sorted(
                repr(sorted((k, v) for k, v in row.items() if k not in _VOLATILE))
                for row in connection.execute(sa.select(table)).mappings()
            )
            for table in (raw_messages, message_locations, parsed_emails, cleaned_texts, chunks, search_documents)
        }
        keys = connection.execute(sa.select(raw_messages.c.message_key)).scalars().all()
    raw = MessageStore(url).raw_bytes(keys)
    vectors = VectorStore(settings.chroma_location(), embedder_from_spec("local").model_name)
    stored = vectors.collection.get(include=["embeddings", "documents", "metadatas"])
    order = np.argsort(stored["ids"])
    return {
        **tables,
        "raw_bytes": sorted(raw.values()),
        "vector_ids": [stored["ids"][i] for i in order],
        "vector_documents": [stored["documents"][i] for i in order],
        "vector_metadata": [
            sorted((k, v) for k, v in stored["metadatas"][i].items() if k != "run_id") for i in order
        ],
        "vectors": np.asarray(stored["embeddings"])[order].round(5).tolist() if len(order) else [],
    }


def _run_in_child(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _RUN], env={**os.environ, **env}, start_new_session=True)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, project_env: Path, postgres: str, monkeypatch: pytest.MonkeyPatch):
    if request.param == "sqlite":
        yield "sqlite"
        return
    name = f"email_assets_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"postgresql://{postgres}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("EMAIL_ASSETS_DATABASE_URL", f"postgresql+psycopg://{postgres}/{name}")
    try:
        yield "postgres"
    finally:
        engine_for.cache_clear()
        with psycopg.connect(f"postgresql://{postgres}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def reference_state(mail_user, instance, backend) -> dict[str, object]:
    """The mailbox on Dovecot and the state of one clean run over it; then a fresh store."""
    mail_user.append(_mailbox())
    assert add_account(mail_user, "work") == 0  # 2 connections: a killed run's lease (tested below) leaves one
    [clean] = materialize_partitions(instance, "work", [DAY], log_level="ERROR")
    assert clean.success
    state = _state()
    assert len(state["raw_bytes"]) == MESSAGES and len(state["vector_ids"]) == MESSAGES
    _empty_the_store(backend)
    return state


def _empty_the_store(backend: str) -> None:
    url = settings.database_url()
    with engine_for(url).begin() as connection:
        for table in (search_documents, chunks, cleaned_texts, parsed_emails, message_locations, raw_messages):
            connection.execute(sa.delete(table))
        connection.execute(sa.text("DELETE FROM folder_state"))
    packs = pack_directory(url)
    for path in packs.rglob("*.pack") if packs else []:
        path.unlink()
    vectors = VectorStore(settings.chroma_location(), embedder_from_spec("local").model_name)
    ids = vectors.collection.get(include=[])["ids"]
    vectors.delete(ids)
    assert _state()["raw_bytes"] == [] and _state()["vector_ids"] == []


@pytest.mark.parametrize(
    "crash_at",
    [
        "raw.batch_committed:1",  # mid-sync: one FETCH batch stored, the next not yet fetched
        "raw.bytes_durable_rows_not_committed:2",  # bytes in the pack, their rows never committed
        "embed.vectors_upserted_rows_not_written:2",  # vectors in Chroma, chunk rows not written
    ],
)
def test_a_killed_run_is_completed_by_the_next_one(reference_state, instance, crash_at: str) -> None:
    child = _run_in_child({"EMAIL_ASSETS_CRASH_AT": crash_at})
    assert child.wait(timeout=300) == -signal.SIGKILL
    partial = _state()
    assert len(partial["raw_bytes"]) < MESSAGES or len(partial["vector_ids"]) < MESSAGES  # it really died half-way
    _fresh_chroma()
    [again] = materialize_partitions(instance, "work", [DAY], log_level="ERROR")
    final = _state()
    _record("killed at " + crash_at, reference_state, final, crashed=0 if again.success else 1)
    assert again.success
    assert all(evaluation.passed for evaluation in again.get_asset_check_evaluations())
    assert final == reference_state


def test_two_runs_of_one_partition_at_once(reference_state) -> None:
    first, second = _run_in_child({}), _run_in_child({})
    codes = (first.wait(timeout=300), second.wait(timeout=300))
    final = _state()
    _record("two runs of one partition at once", reference_state, final, crashed=sum(code != 0 for code in codes))
    assert codes == (0, 0)
    assert final == reference_state


def _record(case: str, reference: dict[str, object], final: dict[str, object], crashed: int) -> None:
    """Lost and duplicated messages and vectors, against the clean run's end state."""
    want, have = Counter(reference["raw_bytes"]), Counter(final["raw_bytes"])
    want_vectors, have_vectors = Counter(reference["vector_ids"]), Counter(final["vector_ids"])
    record_reliability(
        f"{case} ({settings.database_url().split(':')[0]})",
        cases=len(reference["raw_bytes"]),
        lost=sum((want - have).values()) + sum((want_vectors - have_vectors).values()),
        duplicated=sum((have - want).values()) + sum((have_vectors - want_vectors).values()),
        leaked=None,  # no secret is at stake here; the soak and hostile suites grep for it
        crashed=crashed,
    )


def test_a_held_lease_is_renewed_and_a_killed_holder_frees_its_slot(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(connection_slots, "LEASE_SECONDS", 1.0)
    monkeypatch.setattr(connection_slots, "RENEW_EVERY_SECONDS", 0.2)
    slots = ConnectionSlots(f"sqlite:///{tmp_path / 'leases.sqlite'}")
    with slots.hold("work", 1):
        time.sleep(2.5)  # well past one lease: only renewal keeps it
        assert slots.try_acquire("work", 1, "intruder") is None
    assert slots.try_acquire("work", 1, "killed") == 0  # released; now taken by a holder that never renews
    assert slots.try_acquire("work", 1, "next") is None
    time.sleep(1.5)
    assert slots.try_acquire("work", 1, "next") == 0  # the dead holder's lease ran out


def test_the_chroma_writer_lock_dies_with_its_process(tmp_path) -> None:
    """A SIGKILLed writer leaves no claim behind (a Dagster pool claim would stay until the run is failed)."""
    from email_assets.storage.vectors import WRITER_LOCK_FILE

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from email_assets.storage.vectors import VectorStore\n"
            f"with VectorStore({str(tmp_path)!r}, 'local:test').exclusive_writer():\n"
            "    print('held', flush=True); time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    import fcntl

    with open(tmp_path / WRITER_LOCK_FILE, "a+b") as handle:
        with pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.kill()
        holder.wait(timeout=30)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free at once
