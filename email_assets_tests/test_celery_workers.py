"""Runs on two Celery worker hosts (deploy/celery/), each a network namespace of its own.

The services host runs a throwaway PostgreSQL, a redis-server, `chroma run` and Dovecot,
each listening on the host's lab address only; two worker hosts run deploy/celery/worker.sh
with their own hostname, HOME, DAGSTER_HOME, data dir and working dir, and reach every
service over TCP. `dagster-daemon` runs in the root namespace and talks to the same
addresses. Then, as an operator would see it:

(a) backfills of 3 accounts x 31 days (1,514 messages, one day of 405-420 per account),
    recorded as the UI records them, run on both workers;
(b) a worker's run process SIGKILLed in the middle of `email_embeddings`: the run is failed
    by run monitoring within its interval, the worker host is then lost entirely, and the
    backfill run again completes on the other worker;
(c) the sensor's runs (its first look at every account, then new mail) run on the workers,
    never on the daemon's host;
and in the end every table, the raw bytes, the lexical documents and the Chroma vectors
equal those of the same mail synced on one host, in one process.

Selected with `-m celery`; needs root, iproute2, redis-server, PostgreSQL's initdb and
Dovecot (scripts/install-system-packages.sh), else skipped with the reason (failed under CI=true).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from email_assets.credentials import generate_key
from email_assets.defs.backfills import backfill_progress, launch_backfill
from email_assets.defs.materialize import materialize_range
from email_assets.demo.daemon import WORKSPACE, DagsterDaemon, wait_for
from email_assets.demo.dovecot import DovecotServer
from email_assets.embedding import embedder_from_spec
from email_assets.local_model import model_cache_directory
from email_assets.storage.database import engine_for
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import (
    chunks,
    cleaned_texts,
    message_locations,
    parsed_emails,
    raw_messages,
    search_documents,
)
from email_assets.storage.vectors import VectorStore
from email_assets_tests import lab_hosts
from email_assets_tests.conftest import MailUser, add_account, message, utc

FIRST = dt.date(2026, 10, 1)
DAYS = [FIRST + dt.timedelta(days=n) for n in range(31)]
BACKFILLED = ("north", "south", "east")  # (a)
KILLED = "west"  # (b): its run is killed mid-embedding
KILLED_SMALL_DAYS = DAYS[:4]  # embedded before its big day: done, while the big day is not
KILLED_BIG_DAY = DAYS[10]
KILLED_BIG = 300
NEW_MAIL_DAY = DAYS[-1]  # (c)
HOST_TAG = "email_assets/host"  # set by the run on the host that executes it
TASK_TAG = "dagster-celery/task_id"
MONITOR_POLL_SECONDS = 10  # deploy/celery/dagster.yaml: run_monitoring.poll_interval_seconds
_VOLATILE = {"run_id", "fetched_at", "doc_id", "pack", "pack_offset", "raw"}

pytestmark = pytest.mark.celery


def _missing() -> str | None:
    reason = lab_hosts.unavailable()
    if reason:
        return reason
    for tool in ("redis-server", "dovecot"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (scripts/install-system-packages.sh)"
    try:
        from email_assets_tests.postgres_server import _binaries

        _binaries()
    except RuntimeError as error:
        return str(error)
    return None


# --- Mail -------------------------------------------------------------------------------------

TOPICS = ["raid rebuild", "budget review", "offsite plan", "kernel upgrade", "invoice", "hiring", "backup drill"]


def _note(account: str, day: dt.date, number: int) -> tuple[bytes, dt.datetime]:
    """A short message (one chunk): embedding 2,000 of them stays a minute or two on 2 cores."""
    topic = TOPICS[(number + day.day) % len(TOPICS)]
    raw = message(
        f"{account} {topic} {day} #{number}",
        f"Note {number} from {account} on {day} about the {topic}.",
        message_id=f"<{account}.{day}.{number}@lab.example>",
    )
    return raw, utc(day, number % 24, number % 60)


def _mailbox(account: str, big_day: dt.date, big: int, per_day: int) -> list[tuple[bytes, dt.datetime]]:
    notes = [_note(account, day, n) for day in DAYS for n in range(per_day)]
    return notes + [_note(account, big_day, per_day + n) for n in range(big)]


# --- The cluster ------------------------------------------------------------------------------


@dataclass
class Cluster:
    lab: lab_hosts.Lab
    root: Path
    dovecot: DovecotServer
    pg: str
    shared_env: dict[str, str]
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def worker_root(self, name: str) -> Path:
        return self.root / name

    def start_worker(self, name: str) -> None:
        host, root = self.lab.hosts[name], self.worker_root(name)
        offset = lab_hosts.worker_log(root).stat().st_size if lab_hosts.worker_log(root).exists() else 0
        self.workers[name] = lab_hosts.start_worker(host, root, self.shared_env)
        lab_hosts.wait_for_worker(host, root, self.workers[name], after=offset)

    def hostname(self, name: str) -> str:
        return self.lab.hosts[name].hostname

    def run_host(self, run: dg.DagsterRun) -> str | None:
        """The host that executed `run`: its host tag, else the worker log that took its task."""
        if HOST_TAG in run.tags:
            return run.tags[HOST_TAG]
        task = run.tags.get(TASK_TAG)
        for name in ("w1", "w2"):
            log = lab_hosts.worker_log(self.worker_root(name))
            if task and log.exists() and f"execute_job[{task}] received" in log.read_text(errors="replace"):
                return self.hostname(name)
        return None


def _create_databases(pg: str, *names: str) -> None:
    with psycopg.connect(f"postgresql://{pg}/postgres", autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    reason = _missing()
    if reason and os.environ.get("CI"):  # CI installs all of it: there a skip would hide the feature
        pytest.fail(f"the multi-host test cannot run in CI: {reason}")
    if reason:
        pytest.skip(reason)
    with lab_hosts.lab("services", "w1", "w2") as lab:
        services = lab.hosts["services"]
        pg = lab_hosts.start_postgres(services)
        _create_databases(pg, "email_assets", "dagster", "reference")
        redis = lab_hosts.start_redis(services, tmp_path / "redis")
        chroma = lab_hosts.start_chroma(services, tmp_path / "chroma", Path(sys.executable).parent / "chroma")
        server = lab_hosts.start_dovecot(services)
        lab.cleanups.append(lambda: shutil.rmtree(server.root, ignore_errors=True))
        shared_env = {
            "EMAIL_ASSETS_DATABASE_URL": f"postgresql+psycopg://{pg}/email_assets",
            "EMAIL_ASSETS_CHROMA": chroma,
            "EMAIL_ASSETS_DAGSTER_PG_URL": f"postgresql+psycopg2://{pg}/dagster",
            "EMAIL_ASSETS_CELERY_BROKER": f"{redis}/0",
            "EMAIL_ASSETS_CELERY_BACKEND": f"{redis}/1",
            "EMAIL_ASSETS_FERNET_KEYS": generate_key(),
            "EMAIL_ASSETS_RETENTION_DAYS": "0",
            "EMAIL_ASSETS_START_DATE": os.environ["EMAIL_ASSETS_START_DATE"],
            "EMAIL_ASSETS_MODEL_CACHE": str(model_cache_directory()),
            "EMAIL_ASSETS_WORKER_CONCURRENCY": "1",
            "HF_HUB_OFFLINE": "1",
        }
        control = tmp_path / "control"
        (control / "dagster_home").mkdir(parents=True)
        shutil.copy(lab_hosts.CELERY_INSTANCE_YAML, control / "dagster_home" / "dagster.yaml")
        for name, value in {**shared_env, "DAGSTER_HOME": str(control / "dagster_home")}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("EMAIL_ASSETS_DATA_DIR", str(control / "data"))  # must stay unused
        monkeypatch.setenv("EMAIL_ASSETS_SENSOR_INTERVAL_SECONDS", "5")
        monkeypatch.delenv("EMAIL_ASSETS_EMBEDDER", raising=False)
        made = Cluster(lab=lab, root=tmp_path, dovecot=server, pg=pg, shared_env=shared_env)
        try:
            yield made
        finally:
            engine_for.cache_clear()


def _new_account(cluster: Cluster, name: str, mail: list[tuple[bytes, dt.datetime]]) -> MailUser:
    user = MailUser(cluster.dovecot, name, f"pw-{uuid.uuid4().hex[:12]}")
    cluster.dovecot.add_user(user.name, user.password)
    user.append(mail)
    assert add_account(user, name) == 0
    return user


# --- Waiting on the instance -----------------------------------------------------------------


def _backfills_done(instance: dg.DagsterInstance, ids: list[str], timeout: float, daemon: DagsterDaemon) -> None:
    def finished() -> bool:
        return all(backfill_progress(instance, backfill_id).finished for backfill_id in ids)

    wait_for(finished, timeout, f"backfills {ids} finished\n{daemon.log_tail()}", poll=1)


def _backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})))


def _run_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process executing a run's steps (the in-process executor logs it)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        text = record.user_message or ""
        if text.startswith("Executing steps in process (pid: "):
            return int(text.split("pid: ")[1].rstrip(")"))
    return None


# --- What the stores hold ---------------------------------------------------------------------


def _state(database_url: str, chroma: str) -> dict[str, object]:
    """Everything the four assets hold, less what legitimately differs between runs."""
    with engine_for(database_url).connect() as connection:
        state: dict[str, object] = {
            table.name: sorted(
                repr(sorted((k, v) for k, v in row.items() if k not in _VOLATILE))
                for row in connection.execute(sa.select(table)).mappings()
            )
            for table in (raw_messages, message_locations, parsed_emails, cleaned_texts, chunks, search_documents)
        }
        keys = connection.execute(sa.select(raw_messages.c.message_key)).scalars().all()
    raw = MessageStore(database_url).raw_bytes(keys)
    stored = VectorStore(chroma, embedder_from_spec("local").model_name).collection.get(
        include=["embeddings", "documents", "metadatas"]
    )
    order = np.argsort(stored["ids"])
    state.update(
        raw_bytes=sorted(raw.values()),
        vector_ids=[stored["ids"][i] for i in order],
        vector_documents=[stored["documents"][i] for i in order],
        vector_metadata=[
            repr(sorted((k, v) for k, v in stored["metadatas"][i].items() if k != "run_id")) for i in order
        ],
    )
    state["vectors"] = np.asarray(stored["embeddings"])[order] if len(order) else np.zeros((0, 384))
    return state


def _assert_same_state(distributed: dict[str, object], reference: dict[str, object]) -> None:
    assert distributed.keys() == reference.keys()
    for name in distributed:
        if name == "vectors":
            continue
        ours, theirs = distributed[name], reference[name]
        assert len(ours) == len(theirs), f"{name}: {len(ours)} on the workers, {len(theirs)} on one host"
        missing = [item for item in theirs if item not in set(ours)][:2]
        assert ours == theirs, f"{name} differs; e.g. only on one host: {missing}"
    ours, theirs = distributed["vectors"], reference["vectors"]
    assert ours.shape == theirs.shape
    assert np.allclose(ours, theirs, atol=1e-4), float(np.abs(ours - theirs).max())


# --- The phases -----------------------------------------------------------------------------


def _phase_backfill_on_both_workers(cluster: Cluster, instance: dg.DagsterInstance, daemon: DagsterDaemon) -> None:
    """(a) three backfills, as the UI records them, share the two workers."""
    started = time.monotonic()
    ids = [launch_backfill(instance, account, DAYS[0], DAYS[-1]) for account in BACKFILLED]
    _backfills_done(instance, ids, 900, daemon)
    runs = [run for backfill_id in ids for run in _backfill_runs(instance, backfill_id)]
    for backfill_id in ids:
        assert backfill_progress(instance, backfill_id).status == "COMPLETED_SUCCESS"
    assert runs and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [r.status for r in runs]
    hosts = {run.run_id: cluster.run_host(run) for run in runs}
    assert set(hosts.values()) == {cluster.hostname("w1"), cluster.hostname("w2")}, hosts
    print(f"(a) {len(runs)} runs on {sorted(set(hosts.values()))} in {time.monotonic() - started:.0f} s")


def _wait_mid_embedding(store: MessageStore) -> int:
    """Until the small days' chunks are stored and the big day's are not all: mid email_embeddings."""

    def partial() -> int:
        small = sum(store.count(chunks, KILLED, day.isoformat()) for day in KILLED_SMALL_DAYS)
        big = store.count(chunks, KILLED, KILLED_BIG_DAY.isoformat())
        return small if small and big < KILLED_BIG else 0

    return wait_for(partial, 600, "email_embeddings half way", poll=0.1)


def _phase_kill_mid_embedding(cluster: Cluster, instance: dg.DagsterInstance, daemon: DagsterDaemon) -> str:
    """(b) the run process SIGKILLed mid-embedding; failed by monitoring; the other worker redoes it.

    Returns the name of the worker host that survived.
    """
    store = MessageStore(cluster.shared_env["EMAIL_ASSETS_DATABASE_URL"])
    first = launch_backfill(instance, KILLED, DAYS[0], DAYS[-1])
    wait_for(lambda: _backfill_runs(instance, first), 300, f"the {KILLED} run\n{daemon.log_tail()}")
    stored_at_kill = _wait_mid_embedding(store)
    [run] = _backfill_runs(instance, first)
    pid = wait_for(lambda: _run_pid(instance, run.run_id), 30, "the run's pid")
    [victim] = [name for name in ("w1", "w2") if pid in cluster.lab.hosts[name].pids()]
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    failed = wait_for(
        lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
        MONITOR_POLL_SECONDS + 30,
        f"the killed run marked failed\n{daemon.log_tail()}",
        poll=0.2,
    )
    seconds = time.monotonic() - killed_at
    assert failed and seconds <= MONITOR_POLL_SECONDS + 15, seconds  # one poll, and the daemon's own lag
    assert store.count(chunks, KILLED, KILLED_BIG_DAY.isoformat()) < KILLED_BIG  # it did stop half way
    cluster.lab.hosts[victim].kill_everything()  # and then the whole host is lost
    survivor = "w2" if victim == "w1" else "w1"
    print(f"(b) killed on {victim} after {stored_at_kill} small-day chunks; run failed {seconds:.1f} s later")

    retry = launch_backfill(instance, KILLED, DAYS[0], DAYS[-1])
    _backfills_done(instance, [retry], 600, daemon)
    assert backfill_progress(instance, retry).status == "COMPLETED_SUCCESS"
    retried = _backfill_runs(instance, retry)
    assert retried and all(r.status == dg.DagsterRunStatus.SUCCESS for r in retried)
    assert {cluster.run_host(r) for r in retried} == {cluster.hostname(survivor)}
    assert cluster.run_host(instance.get_run_by_id(run.run_id)) == cluster.hostname(victim)
    assert store.count(chunks, KILLED, KILLED_BIG_DAY.isoformat()) == KILLED_BIG
    return victim


def _sensor(command: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "dagster", "sensor", command, "mailbox_highwater_sensor", "-w", str(WORKSPACE)],
        env=os.environ.copy(),
        cwd=os.environ["DAGSTER_HOME"],
        check=True,
        capture_output=True,
    )


def _sensor_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "mailbox_highwater_sensor"})))


def _all_finished(runs: list[dg.DagsterRun]) -> list[dg.DagsterRun]:
    return runs if runs and all(run.is_finished for run in runs) else []


def _phase_sensor_runs_on_workers(cluster: Cluster, instance: dg.DagsterInstance, user: MailUser) -> None:
    """(c) the sensor's first look at every account, then new mail: runs on the workers only."""
    started = time.monotonic()
    _sensor("start")
    first_look = wait_for(lambda: _all_finished(_sensor_runs(instance)), 600, "the sensor's first runs", poll=1)
    user.append([_note("north", NEW_MAIL_DAY, 900 + n) for n in range(3)])
    store = MessageStore(cluster.shared_env["EMAIL_ASSETS_DATABASE_URL"])

    def new_mail_embedded() -> list[dg.DagsterRun]:
        runs = _all_finished(_sensor_runs(instance))
        wanted = store.count(chunks, "north", NEW_MAIL_DAY.isoformat()) == len(_day_notes("north", NEW_MAIL_DAY)) + 3
        return runs if wanted and len(runs) > len(first_look) else []

    runs = wait_for(new_mail_embedded, 300, "the new mail's sensor run", poll=1)
    _sensor("stop")
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [r.status for r in runs]
    workers = {cluster.hostname("w1"), cluster.hostname("w2")}
    hosts = {cluster.run_host(run) for run in runs}
    assert hosts <= workers and socket.gethostname() not in hosts, hosts
    print(f"(c) {len(first_look)} first-look runs, {len(runs) - len(first_look)} for new mail, on {sorted(hosts)}")
    print(f"    in {time.monotonic() - started:.0f} s")


def _day_notes(account: str, day: dt.date) -> list[tuple[bytes, dt.datetime]]:
    return [note for note in MAILBOXES[account] if note[1].date() == day]


MAILBOXES = {
    "north": _mailbox("north", DAYS[5], 410, 3),
    "south": _mailbox("south", DAYS[12], 420, 3),
    "east": _mailbox("east", DAYS[20], 405, 3),
    KILLED: [_note(KILLED, day, 0) for day in KILLED_SMALL_DAYS]
    + [_note(KILLED, KILLED_BIG_DAY, n) for n in range(KILLED_BIG)],
}


def _reference_state(cluster: Cluster, users: dict[str, MailUser], monkeypatch: pytest.MonkeyPatch) -> dict:
    """The same mail synced on one host, in this process: the state the workers must match."""
    home = cluster.root / "reference" / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(lab_hosts.PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    url = f"postgresql+psycopg://{cluster.pg}/reference"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EMAIL_ASSETS_DATABASE_URL", url)
    monkeypatch.setenv("EMAIL_ASSETS_CHROMA", str(cluster.root / "reference" / "chroma"))
    with dg.DagsterInstance.get() as instance:
        for name, user in users.items():
            assert add_account(user, name) == 0
            assert materialize_range(instance, name, DAYS[0], DAYS[-1]).success
    return _state(url, str(cluster.root / "reference" / "chroma"))


def test_backfill_kill_and_sensor_runs_on_two_celery_worker_hosts(cluster: Cluster, monkeypatch) -> None:
    started = time.monotonic()
    users = {name: _new_account(cluster, name, MAILBOXES[name]) for name in BACKFILLED}
    assert sum(len(MAILBOXES[name]) for name in BACKFILLED) >= 1500
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    daemon = DagsterDaemon(Path(os.environ["DAGSTER_HOME"]))
    daemon.stop_instigators(sensors=["mailbox_highwater_sensor"], schedules=["email_sync_schedule"])
    with dg.DagsterInstance.get() as instance, daemon:
        _phase_backfill_on_both_workers(cluster, instance, daemon)
        users[KILLED] = _new_account(cluster, KILLED, MAILBOXES[KILLED])
        victim = _phase_kill_mid_embedding(cluster, instance, daemon)
        cluster.start_worker(victim)  # the host comes back
        _phase_sensor_runs_on_workers(cluster, instance, users["north"])
        # The automation sensor may still be bringing a partition along: wait for every run.
        every_run = wait_for(lambda: _all_finished(list(instance.get_runs())), 300, "every run finished", poll=1)
        assert socket.gethostname() not in {cluster.run_host(run) for run in every_run}
    distributed = _state(cluster.shared_env["EMAIL_ASSETS_DATABASE_URL"], cluster.shared_env["EMAIL_ASSETS_CHROMA"])
    expected_messages = sum(len(mail) for mail in MAILBOXES.values()) + 3
    assert len(distributed["raw_bytes"]) == expected_messages
    assert len(distributed["vector_ids"]) == expected_messages  # one chunk per short note
    reference = _reference_state(cluster, users, monkeypatch)
    _assert_same_state(distributed, reference)
    print(f"{expected_messages} messages; the workers' stores equal one host's; {time.monotonic() - started:.0f} s")
