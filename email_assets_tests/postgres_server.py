"""A PostgreSQL for the tests: the one on 127.0.0.1:5432 if it answers, else a throwaway cluster.

The machine this project grew up on runs PostgreSQL with trust auth; a user's laptop may
not. Rather than fail, the suite then runs `initdb` and `pg_ctl` from the Debian package
into a temporary directory (as `postgres` when we are root, since PostgreSQL refuses to
run as uid 0), exactly as it starts its own Dovecot.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from email_assets.demo.dovecot import free_port

MACHINE_SERVER = "postgres@127.0.0.1:5432"


def answers(server: str) -> bool:
    try:
        with psycopg.connect(f"postgresql://{server}/postgres", connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(
        "no PostgreSQL answers on 127.0.0.1:5432 and initdb is not installed: "
        "run scripts/install-system-packages.sh (it installs the Debian package postgresql)"
    )


def _as_owner(command: list[str], owner: pwd.struct_passwd | None) -> list[str]:
    return ["runuser", "-u", owner.pw_name, "--", *command] if owner else command


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """initdb + pg_ctl start in a temp dir; yields `postgres@127.0.0.1:PORT`."""
    bin_dir = _binaries()
    root = Path(tempfile.mkdtemp(prefix="email-assets-pg-"))
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    if owner:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", free_port()
    subprocess.run(
        _as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"], owner),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_owner(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"], owner
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], owner),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """`user@host:port` of a PostgreSQL with trust auth that tests may create databases on."""
    if answers(MACHINE_SERVER):
        yield MACHINE_SERVER
        return
    with throwaway_cluster() as server:
        yield server
