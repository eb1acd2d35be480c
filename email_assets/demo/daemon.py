"""`dagster-daemon run` on an instance, as an operator runs it: for the tests and benchmarks.

The daemon runs the sensor, the schedules, the run queue and the backfills, and launches
each run in its own process through the code location of `workspace.yaml`: the path a
user's mail takes. Started in its own session and stopped by process group, since the
daemon starts a code server and run workers of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = PROJECT_ROOT / "workspace.yaml"
T = TypeVar("T")


class DagsterDaemon:
    """A running `dagster-daemon` for the instance under `dagster_home`."""

    def __init__(self, dagster_home: Path, env: dict[str, str] | None = None) -> None:
        self.dagster_home = dagster_home
        self.env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(dagster_home)}
        self.log_path = dagster_home / "daemon.log"
        self._process: subprocess.Popen | None = None

    def stop_instigators(self, sensors: Sequence[str] = (), schedules: Sequence[str] = ()) -> None:
        """Stop sensors/schedules (they start RUNNING) before the daemon starts, as in the UI."""
        dagster = [sys.executable, "-m", "dagster"]
        for kind, names in (("sensor", sensors), ("schedule", schedules)):
            for name in names:
                subprocess.run(
                    [*dagster, kind, "stop", name, "-w", str(WORKSPACE)],
                    env=self.env,
                    cwd=self.dagster_home,
                    check=True,
                    capture_output=True,
                )

    def __enter__(self) -> DagsterDaemon:
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(WORKSPACE)],
            env=self.env,
            cwd=self.dagster_home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        with contextlib.suppress(ProcessLookupError):  # run workers it launched share its session
            os.killpg(self._process.pid, signal.SIGKILL)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(condition: Callable[[], T], timeout: float, what: str, poll: float = 0.5) -> T:
    """Poll until `condition()` is truthy; its value, or TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f} s")
        time.sleep(poll)
