"""What every part of the message store shares: one engine per database URL, the packs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from email_assets.storage.database import engine_for
from email_assets.storage.raw_packs import PackStore

IN_CLAUSE_BATCH = 500


def batched(items: Sequence[Any], size: int = IN_CLAUSE_BATCH) -> Iterator[Sequence[Any]]:
    """Slices for IN (...) clauses: SQLite and PostgreSQL both cap bound parameters."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pack_directory(database_url: str) -> Path | None:
    """Where raw bytes go for a SQLite file database (`<name>-raw/` beside it); None keeps
    them in the table (PostgreSQL, in-memory SQLite)."""
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database)
    return path.with_name(f"{path.stem}-raw")


class StoreBase:
    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.engine = engine_for(database_url)
        directory = pack_directory(database_url)
        self.packs = PackStore(directory) if directory is not None else None
