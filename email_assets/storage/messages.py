"""The project's per-message tables behind one object, each concern in its own module.

Every write is keyed by a deterministic key and done in one transaction per batch, so a
run killed half-way leaves whole batches behind and the next run carries on from there:

- `raw_store`: the raw bytes as served (packs on SQLite, the table on PostgreSQL);
- `locations`: where each message sits on the server, its flags, reconciliation;
- `partition_tables`: generic partition-wise access to the derived tables;
- `chunk_rows`, `retention`, `lineage`, `pack_lifecycle`: as named.
"""

from __future__ import annotations

from email_assets.storage.chunk_rows import ChunkRows
from email_assets.storage.lineage import Lineage
from email_assets.storage.locations import LocationStore
from email_assets.storage.partition_tables import PartitionTables
from email_assets.storage.raw_store import PreparedBatch, RawStore
from email_assets.storage.retention import Retention
from email_assets.storage.store_base import pack_directory
from email_assets.storage.tables import chunks, cleaned_texts, parsed_emails, raw_messages


class MessageStore(RawStore, LocationStore, PartitionTables, ChunkRows, Retention, Lineage):
    """The project's tables for one database URL."""


__all__ = [
    "MessageStore",
    "PreparedBatch",
    "pack_directory",
    "parsed_emails",
    "cleaned_texts",
    "chunks",
    "raw_messages",
]
