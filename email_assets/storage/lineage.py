"""One chunk traced back through cleaned, parsed and raw to its locations on the server."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from email_assets.storage.store_base import StoreBase
from email_assets.storage.tables import chunks, cleaned_texts, message_locations, parsed_emails, raw_messages


class Lineage(StoreBase):
    """The lineage query behind `email-assets trace`."""

    def trace_chunk(self, chunk_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            chunk = connection.execute(sa.select(chunks).where(chunks.c.chunk_id == chunk_id)).mappings().first()
            if chunk is None:
                return None
            key = chunk["message_key"]

            def one(table: sa.Table) -> dict[str, Any] | None:
                row = connection.execute(sa.select(table).where(table.c.message_key == key)).mappings().first()
                return dict(row) if row is not None else None

            locations = (
                connection.execute(sa.select(message_locations).where(message_locations.c.message_key == key))
                .mappings()
                .all()
            )
            raw = one(raw_messages)
            with self._raw_resolver(missing_ok=True) as resolve:
                raw = resolve(raw) if raw is not None else None
            return {
                "chunk": dict(chunk),
                "raw": raw,
                "locations": [dict(row) for row in locations],
                "parsed": one(parsed_emails),
                "cleaned": one(cleaned_texts),
            }
