"""A multi-account backfill on one host, then on 1 and 2 Celery worker hosts (deploy/celery/).

Smaller than `email_assets_tests/test_celery_workers.py` by default (3 accounts x 29 days,
3 short notes a day and one day of 150: 711 messages, one chunk each), so the three setups
fit in a few minutes on 2 cores. Every setup gets fresh stores on the same services host
(a network namespace running PostgreSQL, Redis, `chroma run` and Dovecot), and
`dagster-daemon` in the root namespace:
  * one host:   deploy/postgres/dagster.yaml (DefaultRunLauncher): runs on the daemon's host;
  * 1 worker:   deploy/celery/dagster.yaml, one worker host (deploy/celery/worker.sh);
  * 2 workers:  the same, two worker hosts.
Both worker hosts share this machine's cores, so on 2 cores two workers cannot be twice as
fast: the figure says what the launcher costs and whether the work spreads.

Printed per setup: wall time from the backfills' creation to the end of the last run (and
from the first run's start), runs, per-run Dagster overhead (a run's time outside its four
steps, plus its wait between launch and start) and, per host, chunks embedded per second
of `email_embeddings` step time. Needs root (network namespaces), as the test does.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import sqlalchemy as sa

from email_assets import cli
from email_assets.credentials import generate_key
from email_assets.defs.backfills import backfill_progress, launch_backfill
from email_assets.demo.daemon import PROJECT_ROOT, DagsterDaemon, wait_for
from email_assets.demo.dovecot import DovecotServer
from email_assets.local_model import model_cache_directory
from email_assets.storage.database import engine_for
from email_assets.storage.tables import chunks
from email_assets_tests import lab_hosts

# The 29 days before today: inside the day partitions whatever EMAIL_ASSETS_START_DATE and
# retention (30 days by default) say in this process (its partitions are defined at import).
DAYS = [dt.datetime.now(dt.UTC).date() - dt.timedelta(days=n) for n in range(29, 0, -1)]
HOST_TAG = "email_assets/host"
TASK_TAG = "dagster-celery/task_id"
TOPICS = ["raid rebuild", "budget review", "offsite plan", "kernel upgrade", "invoice", "hiring", "backup drill"]


@dataclass(frozen=True)
class Services:
    pg: str
    redis: str
    dovecot: DovecotServer
    users: dict[str, str]


@dataclass(frozen=True)
class Figures:
    setup: str
    wall: float
    from_first_start: float
    runs: int
    overhead: list[float]
    chunks_per_second: dict[str, float]


def _note(account: str, day: dt.date, number: int) -> tuple[bytes, dt.datetime]:
    topic = TOPICS[(number + day.day) % len(TOPICS)]
    raw = (
        f"From: Ana <ana@example.org>\r\nTo: {account}@example.test\r\nSubject: {account} {topic} {day} #{number}\r\n"
        f"Message-ID: <{account}.{day}.{number}@bench.example>\r\nDate: Thu, 01 Oct 2026 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Note {number} from {account} on {day} about the {topic}.\r\n"
    ).encode()
    return raw, dt.datetime.combine(day, dt.time(number % 24, number % 60), dt.UTC)


def fill_mailboxes(server: DovecotServer, accounts: int, per_day: int, big: int) -> dict[str, str]:
    """`accounts` users, each 29 days of `per_day` notes and one day (a different one each) of `big`."""
    users = {}
    for index in range(accounts):
        name, password = f"acct{index}", generate_key()[:24]
        server.add_user(name, password)
        notes = [_note(name, day, n) for day in DAYS for n in range(per_day)]
        notes += [_note(name, DAYS[(7 * index + 3) % len(DAYS)], per_day + n) for n in range(big)]
        server.append(name, notes)
        users[name] = password
    return users


def _fresh_stores(services: Services, chroma: str, label: str) -> dict[str, str]:
    names = (f"email_{label}", f"dagster_{label}")
    with psycopg.connect(f"postgresql://{services.pg}/postgres", autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    return {
        "EMAIL_ASSETS_DATABASE_URL": f"postgresql+psycopg://{services.pg}/{names[0]}",
        "EMAIL_ASSETS_DAGSTER_PG_URL": f"postgresql+psycopg2://{services.pg}/{names[1]}",
        "EMAIL_ASSETS_CHROMA": chroma,
        "EMAIL_ASSETS_CELERY_BROKER": f"{services.redis}/0",
        "EMAIL_ASSETS_CELERY_BACKEND": f"{services.redis}/1",
        "EMAIL_ASSETS_FERNET_KEYS": generate_key(),
        "EMAIL_ASSETS_RETENTION_DAYS": "0",
        "EMAIL_ASSETS_MODEL_CACHE": str(model_cache_directory()),
        "EMAIL_ASSETS_WORKER_CONCURRENCY": "1",
        "HF_HUB_OFFLINE": "1",
    }


def _add_accounts(services: Services) -> None:
    for name, password in services.users.items():
        sys.stdin = io.StringIO(password + "\n")
        args = ["accounts", "add", name, "--host", services.dovecot.host, "--port", str(services.dovecot.imaps_port)]
        args += ["--username", name, "--password-stdin", "--ca-file", str(services.dovecot.ca_file)]
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(args) == 0, name
    sys.stdin = sys.__stdin__


def _run_host(run: dg.DagsterRun, worker_logs: dict[str, Path]) -> str:
    """The host tag the run set, else the worker whose log took its Celery task, else this host."""
    if HOST_TAG in run.tags:
        return run.tags[HOST_TAG]
    task = run.tags.get(TASK_TAG)
    for hostname, log in worker_logs.items():
        if task and f"execute_job[{task}] received" in log.read_text(errors="replace"):
            return hostname
    return socket.gethostname()


def _chunks_by_run(database_url: str) -> dict[str, int]:
    with engine_for(database_url).connect() as connection:
        rows = connection.execute(sa.select(chunks.c.run_id, sa.func.count()).group_by(chunks.c.run_id))
        return {run_id: count for run_id, count in rows}


def _measure(instance: dg.DagsterInstance, backfills: list[str], created: float, env: dict, logs: dict) -> tuple:
    runs = [
        record
        for backfill_id in backfills
        for record in instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    ]
    assert runs and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    embedded = _chunks_by_run(env["EMAIL_ASSETS_DATABASE_URL"])
    overhead, chunks_on, embed_seconds = [], defaultdict(int), defaultdict(float)
    for record in runs:
        steps = {
            stat.step_key: stat.end_time - stat.start_time
            for stat in instance.get_run_step_stats(record.dagster_run.run_id)
        }
        launched = record.create_timestamp.timestamp()
        overhead.append((record.end_time - launched) - sum(steps.values()))
        host = _run_host(record.dagster_run, logs)
        chunks_on[host] += embedded.get(record.dagster_run.run_id, 0)
        embed_seconds[host] += steps.get("email_embeddings", 0.0)
    wall = max(r.end_time for r in runs) - created
    first_start = max(r.end_time for r in runs) - min(r.start_time for r in runs)
    rates = {host: chunks_on[host] / embed_seconds[host] for host in chunks_on if embed_seconds[host]}
    return wall, first_start, len(runs), overhead, rates


def run_setup(setup: str, services: Services, lab: lab_hosts.Lab, root: Path, chroma: str, workers: int) -> Figures:
    """One backfill per account, through a live daemon, on fresh stores; the figures of its runs."""
    label = setup.replace(" ", "_")
    env = _fresh_stores(services, chroma, label)
    home = root / label / "dagster_home"
    home.mkdir(parents=True)
    instance_yaml = lab_hosts.CELERY_INSTANCE_YAML if workers else PROJECT_ROOT / "deploy" / "postgres" / "dagster.yaml"
    shutil.copy(instance_yaml, home / "dagster.yaml")
    previous = dict(os.environ)
    os.environ.update(env, DAGSTER_HOME=str(home), EMAIL_ASSETS_DATA_DIR=str(root / label / "data"))
    started: list = []
    try:
        _add_accounts(services)
        logs = {}
        for index in range(workers):
            host = lab.hosts[f"w{index + 1}"]
            worker_root = root / label / host.name
            started.append(lab_hosts.start_worker(host, worker_root, env))
            lab_hosts.wait_for_worker(host, worker_root, started[-1])
            logs[host.hostname] = lab_hosts.worker_log(worker_root)
        daemon = DagsterDaemon(home)
        daemon.stop_instigators(sensors=["mailbox_highwater_sensor"], schedules=["email_sync_schedule"])
        with daemon, dg.DagsterInstance.get() as instance:
            heartbeats = {"BACKFILL", "QUEUED_RUN_COORDINATOR"}
            wait_for(lambda: heartbeats <= set(instance.get_daemon_heartbeats()), 180, "daemon heartbeats")
            created = time.time()
            ids = [launch_backfill(instance, name, DAYS[0], DAYS[-1]) for name in services.users]
            wait_for(
                lambda: all(backfill_progress(instance, i).finished for i in ids),
                3600,
                f"{setup} backfills\n{daemon.log_tail()}",
                poll=1,
            )
            wall, from_start, runs, overhead, rates = _measure(instance, ids, created, env, logs)
        return Figures(setup, wall, from_start, runs, overhead, rates)
    finally:
        for process in started:  # this setup's workers: stopped by process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        engine_for.cache_clear()
        os.environ.clear()
        os.environ.update(previous)


def _print(figures: Figures) -> None:
    overhead = statistics.median(figures.overhead)
    rates = ", ".join(f"{host} {rate:.1f}" for host, rate in sorted(figures.chunks_per_second.items()))
    print(
        f"{figures.setup:10} wall {figures.wall:6.1f} s (first start to last end {figures.from_first_start:6.1f} s), "
        f"{figures.runs} runs, overhead per run median {overhead:5.1f} s (max {max(figures.overhead):5.1f}), "
        f"chunks/s per host: {rates}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--per-day", type=int, default=3)
    parser.add_argument("--big", type=int, default=150, help="messages on one day of each account")
    args = parser.parse_args()
    reason = lab_hosts.unavailable()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    root = Path(tempfile.mkdtemp(prefix="email-assets-celery-scale-"))
    try:
        with lab_hosts.lab("services", "w1", "w2") as lab:
            services_host = lab.hosts["services"]
            pg = lab_hosts.start_postgres(services_host)
            redis = lab_hosts.start_redis(services_host, root / "redis")
            chroma_bin = Path(sys.executable).parent / "chroma"
            dovecot = lab_hosts.start_dovecot(services_host)
            lab.cleanups.append(lambda: shutil.rmtree(dovecot.root, ignore_errors=True))
            users = fill_mailboxes(dovecot, args.accounts, args.per_day, args.big)
            total = args.accounts * (len(DAYS) * args.per_day + args.big)
            print(f"{args.accounts} accounts x {len(DAYS)} days, {total} messages (one chunk each)", flush=True)
            services = Services(pg, redis, dovecot, users)
            setups = [("one host", 0), ("1 worker", 1), ("2 workers", 2)]
            for port, (setup, workers) in enumerate(setups, start=8000):
                chroma = lab_hosts.start_chroma(services_host, root / f"chroma-{port}", chroma_bin, port=port)
                _print(run_setup(setup, services, lab, root, chroma, workers))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
