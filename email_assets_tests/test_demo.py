"""`make demo` as a newcomer runs it: the demo module from a fresh directory, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dovecot


def test_the_demo_runs_end_to_end_from_a_fresh_directory(tmp_path: Path) -> None:
    """Its mail server reads its mailboxes as an unprivileged user, so they must not sit in
    the private (0700) data dir: that broke the demo once, and no other test runs it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("EMAIL_ASSETS_", "DAGSTER_"))}
    done = subprocess.run(
        [sys.executable, "-m", "email_assets.demo.run"],
        cwd=tmp_path,
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "All four assets materialized for 14 partitions" in done.stdout
    first_hit = next(line for line in done.stdout.splitlines() if line.startswith("#1 "))
    assert "Database outage" in first_hit, done.stdout[-2000:]
    assert (tmp_path / "data" / "demo").stat().st_mode & 0o077 == 0  # the store stays private
    assert (tmp_path / "data" / "demo" / "env.sh").is_file()
