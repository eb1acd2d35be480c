"""Everything older than the retention window, out of every table (vectors first, by the caller)."""

from __future__ import annotations

import sqlalchemy as sa

from email_assets.storage.pack_lifecycle import PackLifecycle, delete_raw_rows
from email_assets.storage.tables import (
    chunks,
    cleaned_texts,
    message_locations,
    parsed_emails,
    raw_messages,
    search_documents,
)


class Retention(PackLifecycle):
    """Deleting days past retention."""

    def chunk_ids_before(self, cutoff_day: str, collection: str) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(chunks.c.chunk_id).where(chunks.c.day < cutoff_day, chunks.c.collection == collection)
            )
            return [row[0] for row in rows]

    def delete_days_before(self, cutoff_day: str) -> dict[str, int]:
        deleted = {}
        with self.engine.begin() as connection:
            for table in (search_documents, chunks, cleaned_texts, parsed_emails, message_locations):
                result = connection.execute(sa.delete(table).where(table.c.day < cutoff_day))
                deleted[table.name] = result.rowcount or 0
            deleted[raw_messages.name], regions = delete_raw_rows(connection, raw_messages.c.day < cutoff_day)
        self._erase(regions)
        return deleted
