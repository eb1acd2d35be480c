"""Generic reads and writes of the derived tables, one account x day partition at a time.

Every derived row is keyed by its message key, so a step can read what it has, skip
what is current and rewrite the rest, batch by batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from email_assets.storage.database import upsert
from email_assets.storage.store_base import StoreBase, batched


class PartitionTables(StoreBase):
    """Partition-wise access to any per-message table."""

    def count(self, table: sa.Table, account: str, day: str, *conditions: Any) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.account == account, table.c.day == day, *conditions)
            ).scalar_one()

    def versions_in_partition(
        self, table: sa.Table, version_columns: str | tuple[str, ...], account: str, day: str
    ) -> dict[str, Any]:
        """message_key -> version (or tuple of versions): what a step needs to skip work."""
        names = (version_columns,) if isinstance(version_columns, str) else version_columns
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(table.c.message_key, *(table.c[name] for name in names)).where(
                    table.c.account == account, table.c.day == day
                )
            )
            if isinstance(version_columns, str):
                return {row[0]: row[1] for row in rows}
            return {row[0]: tuple(row[1:]) for row in rows}

    def rows_in_partition(
        self,
        table: sa.Table,
        account: str,
        day: str,
        keys: Iterable[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> Iterator[sa.RowMapping]:
        """A partition's rows (only `columns` when given: bodies are large), optionally of `keys`."""
        with self.engine.connect() as connection:
            selected = [table.c[name] for name in columns] if columns else [table]
            query = sa.select(*selected).where(table.c.account == account, table.c.day == day)
            if keys is None:
                yield from connection.execute(query).mappings()
                return
            for batch in batched(sorted(keys)):
                yield from connection.execute(query.where(table.c.message_key.in_(batch))).mappings()

    def write_rows(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            upsert(connection, table, rows)

    def delete_messages(self, table: sa.Table, keys: Iterable[str]) -> int:
        deleted = 0
        with self.engine.begin() as connection:
            for batch in batched(sorted(keys)):
                result = connection.execute(sa.delete(table).where(table.c.message_key.in_(batch)))
                deleted += result.rowcount or 0
        return deleted
