"""Who may write a partition's vectors at a time, seen by every process that writes them.

An embedded Chroma directory has one writer: its OS file lock (`VectorStore.exclusive_writer`)
serializes every process on the host that owns the directory. A Chroma server takes
concurrent writers, but two runs of one partition must still not interleave their upserts
and orphan deletions, and with runs on several hosts a file lock locks nothing. There the
lock lives in the database every host shares: a PostgreSQL advisory lock per partition,
held by a connection of its own, so it dies with the process (a SIGKILLed worker frees it
when its connection drops) and needs no expiry by any host's clock. The retention purge
takes the same locks' exclusive parent, so it never deletes under an embedding run.
A Chroma server beside SQLite means one host (SQLite is not shared), so a file lock beside
the database does there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from email_assets.storage.database import engine_for
from email_assets.storage.vectors import VectorStore

ALL_PARTITIONS = "*"  # the retention purge's scope: exclusive against every partition's writer


def advisory_key(scope: str) -> int:
    """A stable signed 64-bit key for `scope` (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(f"email_assets-vectors:{scope}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def vector_writer(vectors: VectorStore, database_url: str, scope: str) -> Iterator[None]:
    """Hold the right to write the vectors of `scope` (`account|day`, or ALL_PARTITIONS)."""
    if not vectors.is_server:
        with vectors.exclusive_writer():
            yield
    elif sa.engine.make_url(database_url).get_backend_name() == "postgresql":
        with _advisory_locks(database_url, scope):
            yield
    else:
        with _file_lock(sa.engine.make_url(database_url).database, scope):
            yield


@contextlib.contextmanager
def _advisory_locks(database_url: str, scope: str) -> Iterator[None]:
    """A partition holds the shared parent and its own key; the purge holds the parent alone, exclusively."""
    parent = advisory_key(ALL_PARTITIONS)
    with engine_for(database_url).connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")  # no transaction held open
        if scope == ALL_PARTITIONS:
            statements = [("pg_advisory_lock", parent)]
        else:
            statements = [("pg_advisory_lock_shared", parent), ("pg_advisory_lock", advisory_key(scope))]
        for function, key in statements:
            connection.execute(sa.text(f"SELECT {function}(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock_all()"))


@contextlib.contextmanager
def _file_lock(database_path: str | None, scope: str) -> Iterator[None]:
    """One lock file beside the SQLite database for every scope: a single host writes seldom at once."""
    del scope  # one host: serializing all writers costs little and keeps the purge exclusive too
    path = Path(database_path or ".").with_suffix(".vectors.lock")
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
