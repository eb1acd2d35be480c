"""`make bench`: a 30-day backfill of one account through `dagster-daemon`, against one process.

Builds a 1,500-message mailbox over 31 UTC days in a local Dovecot (bodies a quarter of
`run.py`'s: median ~1.3 KB, as person-written mail; ~4,500 chunks), then, interleaved
`--repeat` times on fresh stores:
  * one process:  `pipeline` directly: sync all days in one IMAP session, then parse, clean
                  and embed every day with the local model loaded once (the engine's speed);
  * daemon:       `email-assets backfill` as the UI records it, run by a `dagster-daemon`
                  (its backfill loop, the run queue, a run process per run), timed from the
                  backfill's creation to the end of its last run, with the daemon already up
                  (the daemon marks the backfill complete up to 30 s later; printed too).
Prints the medians, their ratio (target <= 1.3x) and the runs the daemon used (target <= 2).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from benchmarks.run import PASSWORD, USER, build_maildir, warm_up
from email_assets import cli, pipeline
from email_assets.credentials import generate_key
from email_assets.defs.backfills import backfill_progress, launch_backfill
from email_assets.demo.daemon import PROJECT_ROOT, DagsterDaemon, wait_for
from email_assets.demo.dovecot import DovecotServer, make_server
from email_assets.embedding import embedder_from_spec
from email_assets.storage.accounts import Account
from email_assets.storage.messages import MessageStore
from email_assets.storage.vectors import VectorStore


def one_process(server: DovecotServer, workdir: Path, days: list) -> float:
    store = MessageStore(f"sqlite:///{workdir / 'one.sqlite'}")
    account = Account(
        "bench", server.host, server.imaps_port, USER, "ssl", ["INBOX"], 2, server.ca_file.read_text(), b""
    )
    started = time.perf_counter()
    pipeline.sync_account_days(account, PASSWORD, store, days, None)
    embedder = embedder_from_spec("local")
    vectors = VectorStore(str(workdir / "one-chroma"), embedder.model_name)
    for day in days:
        iso = day.isoformat()
        pipeline.parse_partition(store, "bench", iso, None)
        pipeline.clean_partition(store, "bench", iso, None)
        pipeline.embed_partition(store, vectors, embedder, "bench", iso, None)
    return time.perf_counter() - started


def _operator_env(home: Path) -> dict[str, str]:
    return {
        "DAGSTER_HOME": str(home / "dagster_home"),
        "EMAIL_ASSETS_DATA_DIR": str(home / "data"),
        "EMAIL_ASSETS_FERNET_KEYS": generate_key(),
        "EMAIL_ASSETS_RETENTION_DAYS": "0",
        "HF_HUB_OFFLINE": "1",
    }


def through_daemon(server: DovecotServer, home: Path, days: list) -> tuple[float, int]:
    env = _operator_env(home)
    (home / "dagster_home").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    previous = dict(os.environ)
    os.environ.update(env)
    try:
        sys.stdin = io.StringIO(PASSWORD + "\n")
        with contextlib.redirect_stdout(io.StringIO()):
            added = cli.main(
                ["accounts", "add", "bench", "--host", server.host, "--port", str(server.imaps_port),
                 "--username", USER, "--password-stdin", "--ca-file", str(server.ca_file), "--folders", "INBOX"]
            )  # fmt: skip
        assert added == 0
        daemon = DagsterDaemon(home / "dagster_home", env)
        daemon.stop_instigators(sensors=["mailbox_highwater_sensor"], schedules=["email_sync_schedule"])
        with daemon, dg.DagsterInstance.get() as instance:
            wait_for(lambda: _daemon_ready(instance), 120, "daemon heartbeats")
            started, launched_at = time.perf_counter(), time.time()
            backfill_id = launch_backfill(instance, "bench", days[0], days[-1])
            progress = wait_for(
                lambda: (p := backfill_progress(instance, backfill_id)).finished and p,
                1800,
                f"backfill\n{daemon.log_tail()}",
                poll=0.25,
            )
            marked = time.perf_counter() - started
            assert progress.status == "COMPLETED_SUCCESS", progress.describe()
            assert progress.partitions_done == len(days), progress.describe()
            # Done when its last run ended; the daemon marks the backfill complete on its
            # next 30 s iteration, which would quantize every figure to that loop.
            runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            done = max(record.end_time for record in runs) - launched_at
            waited = min(record.start_time for record in runs) - launched_at
            print(
                f"  (first run started after {waited:.1f} s: backfill loop, queue, launch; "
                f"backfill marked complete after {marked:.1f} s)",
                flush=True,
            )
            return done, progress.runs
    finally:
        sys.stdin = sys.__stdin__
        os.environ.clear()
        os.environ.update(previous)


def _daemon_ready(instance: dg.DagsterInstance) -> bool:
    heartbeats = instance.get_daemon_heartbeats()
    return {"BACKFILL", "QUEUED_RUN_COORDINATOR"} <= set(heartbeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender; the median counts")
    parser.add_argument("--size-scale", type=float, default=0.25, help="body sizes relative to benchmarks.run's")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="email-assets-backfill-"))
    workdir.chmod(0o755)
    server = make_server({USER: PASSWORD}, root=workdir / "dovecot")
    server.start()
    try:
        total_bytes, days = build_maildir(server, args.messages, size_scale=args.size_scale)
        print(f"mailbox: {args.messages} messages, {total_bytes / 1e6:.1f} MB, {len(days)} day partitions")
        warm_up(server)
        embedder_from_spec("local").embed(["warm the model files into the page cache"])
        one, daemon, runs = [], [], []
        for repeat in range(args.repeat):
            run_dir = workdir / f"repeat-{repeat}"
            run_dir.mkdir()
            one.append(one_process(server, run_dir, days))
            print(f"  one process            {one[-1]:7.1f} s", flush=True)
            seconds, used = through_daemon(server, run_dir / "operator", days)
            daemon.append(seconds)
            runs.append(used)
            print(f"  daemon backfill        {seconds:7.1f} s in {used} run(s)", flush=True)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    one_s, daemon_s = statistics.median(one), statistics.median(daemon)
    print()
    print(f"one process (median)   = {one_s:.1f} s")
    print(f"daemon backfill        = {daemon_s:.1f} s, runs {max(runs)} (target <= 2)")
    print(f"daemon / one process   = {daemon_s / one_s:.2f}x   (target <= 1.3)")
    print(f"  per repeat           = {', '.join(f'{d / o:.2f}' for d, o in zip(daemon, one, strict=True))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
