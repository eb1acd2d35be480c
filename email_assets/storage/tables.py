"""The project's own tables (SQLAlchemy Core), one per asset plus sync state.

Keys are deterministic (see `mail.keys`), so every write is an idempotent upsert. What a
server or a user names (folders, server ids, hosts, usernames) is Text, unbounded: a
VARCHAR limit is enforced by PostgreSQL only, and one long folder name failed every sync. Rows
carry the partition (`account`, `day`) they belong to, the code version that wrote them
and the Dagster run id, which is what `email-assets trace` follows back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite keeps no time zone and hands back naive values, which Python would then read
    as local time: a message's INTERNALDATE could move to another day on a machine that
    is not on UTC.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)

    @staticmethod
    def sqlite_text(value: dt.datetime | None) -> str | None:
        """The text SQLAlchemy's SQLite dialect stores for this value, made in one call.

        For bulk writes: the generic chain (this decorator, then the dialect's
        %-formatting) cost ~10 us a value, a third of storing a message's rows.
        """
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("security", sa.String(16), nullable=False),
    sa.Column("folders", sa.JSON, nullable=False),
    sa.Column("max_connections", sa.Integer, nullable=False),
    sa.Column("ca_file", sa.Text),  # before ca_certificate: a path on the host that added the account
    sa.Column("ca_certificate", sa.Text),  # PEM: every host that syncs the account verifies with it
    sa.Column("encrypted_secret", sa.LargeBinary, nullable=False),
    sa.Column("mechanism", sa.String(16), nullable=False, default="login"),
    sa.Column("token_source", sa.Text),  # only rows from before sealing: see `credentials`
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("last_success_at", UTCDateTime()),
)

folder_state = sa.Table(
    "folder_state",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("folder", sa.Text, primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger, nullable=False),
    sa.Column("highest_uid", sa.BigInteger, nullable=False),
    sa.Column("uidnext", sa.BigInteger, nullable=False),
    sa.Column("message_count", sa.Integer, nullable=False),
    sa.Column("last_sync_at", UTCDateTime(), nullable=False),
)

raw_messages = sa.Table(
    "raw_messages",
    metadata,
    sa.Column("message_key", sa.String(64), primary_key=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("internaldate", UTCDateTime(), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    # The bytes themselves; empty when they are in a pack file (embedded SQLite, see
    # `storage.raw_packs`), which `pack` and `pack_offset` then name.
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("fetched_at", UTCDateTime(), nullable=False),
    # The server's own ids (Gmail X-GM-MSGID/X-GM-THRID, RFC 8474 EMAILID/THREADID), if any.
    sa.Column("server_id", sa.Text),
    sa.Column("server_thread_id", sa.Text),
    sa.Column("pack", sa.String(64)),
    sa.Column("pack_offset", sa.BigInteger),
    sa.Index("ix_raw_messages_partition", "account", "day"),
    sa.Index("ix_raw_messages_server_id", "account", "server_id"),
    sa.Index("ix_raw_messages_pack", "account", "pack"),
)

message_locations = sa.Table(
    "message_locations",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("folder", sa.Text, primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger, primary_key=True),
    sa.Column("uid", sa.BigInteger, primary_key=True),
    sa.Column("message_key", sa.String(64), nullable=False, index=True),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("internaldate", UTCDateTime(), nullable=False),
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
    sa.Column("date", UTCDateTime()),
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
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

# The lexical side of search, one row per message with text (see `storage.lexical`):
# written by email_embeddings next to the vectors, deleted with them.
search_documents = sa.Table(
    "search_documents",
    metadata,
    sa.Column("doc_id", sa.Integer, primary_key=True, autoincrement=True),  # the FTS5 rowid
    sa.Column("message_key", sa.String(64), nullable=False, unique=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("date_ts", sa.BigInteger),
    sa.Column("from_address", sa.Text),
    sa.Column("has_attachment", sa.Boolean, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Index("ix_search_documents_partition", "account", "day"),
)

# SQLite: an FTS5 index over the table, kept in step by triggers, so every insert and
# delete through SQLAlchemy (re-runs, expunges, retention) updates it in the same transaction.
_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(subject, sender, body, content='search_documents', "
    "content_rowid='doc_id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS search_documents_insert AFTER INSERT ON search_documents BEGIN "
    "INSERT INTO search_fts(rowid, subject, sender, body) VALUES (new.doc_id, new.subject, new.sender, new.body); END",
    "CREATE TRIGGER IF NOT EXISTS search_documents_delete AFTER DELETE ON search_documents BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, subject, sender, body) "
    "VALUES ('delete', old.doc_id, old.subject, old.sender, old.body); END",
    "CREATE TRIGGER IF NOT EXISTS search_documents_update AFTER UPDATE ON search_documents BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, subject, sender, body) "
    "VALUES ('delete', old.doc_id, old.subject, old.sender, old.body); "
    "INSERT INTO search_fts(rowid, subject, sender, body) VALUES (new.doc_id, new.subject, new.sender, new.body); END",
]
# PostgreSQL: a stored tsvector (subject weighted above sender above body) with a GIN index.
_POSTGRES_FTS = [
    "ALTER TABLE search_documents ADD COLUMN IF NOT EXISTS tsv tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', subject), 'A') || setweight(to_tsvector('simple', sender), 'B') || "
    "setweight(to_tsvector('english', body), 'C')) STORED",
    "CREATE INDEX IF NOT EXISTS ix_search_documents_tsv ON search_documents USING GIN (tsv)",
]
for _statement in _SQLITE_FTS:
    sa.event.listen(search_documents, "after_create", sa.DDL(_statement).execute_if(dialect="sqlite"))
for _statement in _POSTGRES_FTS:
    sa.event.listen(search_documents, "after_create", sa.DDL(_statement).execute_if(dialect="postgresql"))
