"""Engine creation and the one dialect-specific write: an idempotent upsert.

SQLite (embedded default) and PostgreSQL both support INSERT ... ON CONFLICT, which is
what makes re-materializing a partition a no-op instead of a duplicate. A SQLite file
holds all the mail, so it is created readable by its owner only; SQLite gives its -wal
and -shm files the database's permissions.
"""

from __future__ import annotations

import contextlib
import operator
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from email_assets.errors import ConfigurationError
from email_assets.storage.tables import UTCDateTime, metadata

URL_VARIABLE = "EMAIL_ASSETS_DATABASE_URL"
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


@lru_cache(maxsize=8)
def engine_for(url: str) -> sa.Engine:
    """One engine per URL per process, with the schema created on first use.

    Every way the URL or the database can be wrong is one line naming the variable.
    """
    try:
        if url.startswith("sqlite"):
            _private_sqlite_file(url)
            engine = sa.create_engine(url, connect_args={"timeout": 60})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
        metadata.create_all(engine)
        _migrate(engine)
    except (sa.exc.ArgumentError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigurationError(
            f"{URL_VARIABLE} is not a valid SQLAlchemy URL ({reason}): use sqlite:///PATH or postgresql+psycopg://..."
        ) from None
    except ImportError as error:
        raise ConfigurationError(
            f"{URL_VARIABLE} names a database driver that is not installed ({error.name}): "
            "use sqlite:///PATH or postgresql+psycopg://..."
        ) from None
    except sa.exc.DBAPIError as error:
        reason = str(error.orig).splitlines()[0] if error.orig else "connection failed"
        raise ConfigurationError(f"cannot open the database in {URL_VARIABLE}: {reason}") from None
    return engine


def _private_sqlite_file(url: str) -> None:
    """Create the database file for its owner only, and take group and other access away
    from one (and its -wal/-shm) that an earlier release made readable by everyone."""
    path = sa.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:  # only when missing: an existing database may be one this user can only read
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE))
    except FileExistsError:
        pass
    except OSError as error:
        raise ConfigurationError(
            f"cannot create the SQLite database {path}: {error.strerror or error}: "
            f"check {URL_VARIABLE} (or EMAIL_ASSETS_DATA_DIR, where it is by default)"
        ) from None
    for name in (path, *(path + suffix for suffix in SQLITE_COMPANIONS)):
        make_private(name)


def make_private(path: str | os.PathLike[str]) -> None:
    """Drop group and other permissions from `path` if it exists and is ours to change."""
    try:
        status = os.stat(path)
        if status.st_mode & 0o077 and status.st_uid == os.geteuid():
            os.chmod(path, status.st_mode & 0o700)
    except OSError:
        return


def _migrate(engine: sa.Engine) -> None:
    _add_new_columns(engine)
    if engine.dialect.name == "postgresql":
        _unbound_text_columns(engine)


def _unbound_text_columns(engine: sa.Engine) -> None:
    """Columns that became Text (folder names, server ids: the server decides their length)
    were VARCHAR(n) in databases made by earlier releases, where a longer value failed the
    whole sync with DataError. VARCHAR to TEXT is binary compatible in PostgreSQL: no
    table rewrite, indexes kept."""
    inspector = sa.inspect(engine)
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            if not inspector.has_table(table.name):
                continue
            existing = {column["name"]: column["type"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                found = existing.get(column.name)
                if isinstance(column.type, sa.Text) and isinstance(found, sa.String) and found.length:
                    quote = engine.dialect.identifier_preparer.quote
                    connection.exec_driver_sql(
                        f"ALTER TABLE {quote(table.name)} ALTER COLUMN {quote(column.name)} TYPE TEXT"
                    )


def _add_new_columns(engine: sa.Engine) -> None:
    """Bring a database made by an earlier release up to the current tables.

    Releases so far only add nullable columns and indexes, which `create_all` does not do
    for tables that exist; a column that could not be added this way is a one-line error,
    not a half-migrated database.
    """
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        existing = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in existing]
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        with engine.begin() as connection:
            for column in missing:
                if not column.nullable:
                    raise ConfigurationError(
                        f"table {table.name} lacks required column {column.name}: the database is from an "
                        "incompatible release"
                    )
                column_type = column.type.compile(dialect=engine.dialect)
                connection.exec_driver_sql(
                    f"ALTER TABLE {table.name} ADD COLUMN {engine.dialect.identifier_preparer.quote(column.name)} "
                    f"{column_type}"
                )
            for index in table.indexes:
                if index.name not in indexes:
                    index.create(connection)


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


@contextlib.contextmanager
def background_checkpoints(engine: sa.Engine, every_seconds: float = 0.05) -> Iterator[None]:
    """While a bulk load writes, move SQLite's WAL checkpoints off the writer's path.

    A checkpoint copies the WAL into the database and fsyncs both; run by the committing
    writer (the autocheckpoint), it stalled the raw-message writer ~0.5 s per 10,000
    messages while the IMAP reader waited on it. A PASSIVE checkpoint from another
    connection runs beside the writer instead; kept up with, the WAL restarts from its
    start and the writer's own autocheckpoint finds nothing left to do. Durability is
    unchanged: under synchronous=NORMAL a commit was never fsynced before its checkpoint.
    No-op on other databases.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    stop = threading.Event()

    def checkpoint() -> None:
        try:
            connection = engine.raw_connection()
            try:
                cursor = connection.cursor()
                while not stop.wait(every_seconds):
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.close()
            finally:
                connection.close()
        except (sa.exc.DBAPIError, sqlite3.Error):
            return  # the writer's own autocheckpoint takes over, as without this thread

    thread = threading.Thread(target=checkpoint, name="sqlite-checkpoints", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
        _sqlite_upsert(connection, table, rows, update)
        return
    if dialect != "postgresql":
        raise ConfigurationError(f"unsupported database dialect {dialect!r}: use SQLite or PostgreSQL")
    statement = postgresql.insert(table)
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


def _sqlite_upsert(connection: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]], update: bool) -> None:
    """The same upsert as plain `executemany` on the driver.

    SQLAlchemy's per-row parameter handling (~35 us a row) made the raw-message writer,
    not the IMAP reader, the limit of a sync: the writer thread spent 2 s of a 2.7 s sync
    storing 10,000 messages. Values still go through each column type's bind processor,
    so what is stored is exactly what the SQLAlchemy path would store.
    """
    columns = tuple(rows[0])
    sql, processors = _sqlite_statement(table, columns, update, connection.dialect)
    pick = operator.itemgetter(*columns)
    values: list[Any] = [pick(row) for row in rows] if len(columns) > 1 else [(pick(row),) for row in rows]
    converted = [(index, process) for index, process in enumerate(processors) if process is not None]
    if converted:  # only the few typed columns (dates, blobs, JSON) take a Python call per value
        for position, row_values in enumerate(values):
            listed = list(row_values)
            for index, process in converted:
                listed[index] = process(listed[index])
            values[position] = tuple(listed)
    connection.exec_driver_sql(sql, values)


@lru_cache(maxsize=64)
def _sqlite_statement(
    table: sa.Table, columns: tuple[str, ...], update: bool, dialect: sa.Dialect
) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    keys = [column.name for column in table.primary_key.columns]
    quoted = [dialect.identifier_preparer.quote(name) for name in columns]
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({', '.join(quoted)}) "
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({', '.join(dialect.identifier_preparer.quote(key) for key in keys)}) "
    )
    changed = [name for name, quoted_name in zip(columns, quoted, strict=True) if name not in keys]
    if update and changed:
        sql += "DO UPDATE SET " + ", ".join(
            f"{dialect.identifier_preparer.quote(name)} = excluded.{dialect.identifier_preparer.quote(name)}"
            for name in changed
        )
    else:
        sql += "DO NOTHING"
    # dialect_impl: a TypeDecorator's own conversion *and* the dialect's (SQLite stores
    # datetimes as text in SQLAlchemy's format, whole seconds included).
    processors = tuple(
        UTCDateTime.sqlite_text
        if isinstance(table.c[name].type, UTCDateTime)
        else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in columns
    )
    return sql, processors
