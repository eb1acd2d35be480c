"""The chunks table: which chunk ids a partition has in which Chroma collection."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from email_assets.storage.store_base import StoreBase, batched
from email_assets.storage.tables import chunks


class ChunkRows(StoreBase):
    """Chunk bookkeeping beside the vectors."""

    def chunk_ids_in_partition(self, account: str, day: str, collection: str) -> dict[str, str]:
        """chunk_id -> message_key of the partition's chunks in one collection."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(chunks.c.chunk_id, chunks.c.message_key).where(
                    chunks.c.account == account, chunks.c.day == day, chunks.c.collection == collection
                )
            )
            return dict(rows.all())

    def delete_chunks(self, chunk_ids: Iterable[str]) -> None:
        with self.engine.begin() as connection:
            for batch in batched(sorted(chunk_ids)):
                connection.execute(sa.delete(chunks).where(chunks.c.chunk_id.in_(batch)))
