"""The project's own tables (SQLAlchemy Core), one per asset plus sync state.

Keys are deterministic (see `mail.keys`), so every write is an idempotent upsert. Rows
carry the partition (`account`, `day`) they belong to, the code version that wrote them
and the Dagster run id, which is what `email-assets trace` follows back.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("username", sa.String(255), nullable=False),
    sa.Column("security", sa.String(16), nullable=False),
    sa.Column("folders", sa.JSON, nullable=False),
    sa.Column("max_connections", sa.Integer, nullable=False),
    sa.Column("ca_file", sa.String(1024)),
    sa.Column("encrypted_secret", sa.LargeBinary, nullable=False),
    sa.Column("mechanism", sa.String(16), nullable=False, default="login"),
    sa.Column("token_source", sa.String(1024)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("last_success_at", sa.DateTime(timezone=True)),
)

folder_state = sa.Table(
    "folder_state",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("folder", sa.String(512), primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger, nullable=False),
    sa.Column("highest_uid", sa.BigInteger, nullable=False),
    sa.Column("uidnext", sa.BigInteger, nullable=False),
    sa.Column("message_count", sa.Integer, nullable=False),
    sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=False),
)

raw_messages = sa.Table(
    "raw_messages",
    metadata,
    sa.Column("message_key", sa.String(64), primary_key=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("internaldate", sa.DateTime(timezone=True), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_raw_messages_partition", "account", "day"),
)

message_locations = sa.Table(
    "message_locations",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("folder", sa.String(512), primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger, primary_key=True),
    sa.Column("uid", sa.BigInteger, primary_key=True),
    sa.Column("message_key", sa.String(64), nullable=False, index=True),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("internaldate", sa.DateTime(timezone=True), nullable=False),
    sa.Column("flags", sa.Text, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Index("ix_message_locations_partition", "account", "day", "folder"),
)

parsed_emails = sa.Table(
    "parsed_emails",
    metadata,
    sa.Column("message_key", sa.String(64), primary_key=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("raw_sha256", sa.String(64), nullable=False),
    sa.Column("message_id", sa.Text),
    sa.Column("subject", sa.Text),
    sa.Column("from_name", sa.Text),
    sa.Column("from_address", sa.Text),
    sa.Column("to_addresses", sa.JSON, nullable=False),
    sa.Column("cc_addresses", sa.JSON, nullable=False),
    sa.Column("date", sa.DateTime(timezone=True)),
    sa.Column("date_source", sa.String(16), nullable=False),
    sa.Column("in_reply_to", sa.Text),
    sa.Column("references", sa.JSON, nullable=False),
    sa.Column("thread_id", sa.Text),
    sa.Column("text_body", sa.Text),
    sa.Column("html_body", sa.Text),
    sa.Column("attachments", sa.JSON, nullable=False),
    sa.Column("defects", sa.JSON, nullable=False),
    sa.Column("parse_error", sa.Text),
    sa.Column("code_version", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Index("ix_parsed_emails_partition", "account", "day"),
)

cleaned_texts = sa.Table(
    "cleaned_texts",
    metadata,
    sa.Column("message_key", sa.String(64), primary_key=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("source", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("quoted_text", sa.Text, nullable=False),
    sa.Column("signature_text", sa.Text, nullable=False),
    sa.Column("removed", sa.JSON, nullable=False),
    sa.Column("upstream_version", sa.String(64), nullable=False),
    sa.Column("code_version", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Index("ix_cleaned_texts_partition", "account", "day"),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("chunk_id", sa.String(64), primary_key=True),
    sa.Column("message_key", sa.String(64), nullable=False, index=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("chunk_index", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("token_count", sa.Integer, nullable=False),
    sa.Column("embedding_model", sa.String(255), nullable=False),
    sa.Column("collection", sa.String(255), nullable=False),
    sa.Column("code_version", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Index("ix_chunks_partition", "account", "day"),
)

connection_leases = sa.Table(
    "connection_leases",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
