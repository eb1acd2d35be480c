"""Dagster resources: typed fields, set at the wiring site from `dg.EnvVar`, secrets decrypted only at use.

`configured_resources()` gives each field `dg.EnvVar(NAME)` where the variable is set for
the code location: Dagster resolves it in each run's process and the UI shows only the
variable's name, so neither the database URL (it may hold a password) nor the Fernet keys
ever appear in run config, the launchpad or the event log. A field left unset falls back,
in the run, to what `settings` derives (the SQLite file and Chroma directory in the data
dir, `local`, 30 days), so a fresh checkout runs with no variable set. A deployment moves
to PostgreSQL or a Chroma server by configuration alone.
"""

import os
from typing import Optional

import dagster as dg

from email_assets import pipeline, settings
from email_assets.credentials import KEYS_VARIABLE, SecretBox
from email_assets.defs import hosts
from email_assets.embedding import Embedder, embedder_from_spec
from email_assets.errors import UserError
from email_assets.mail.chunking import CHUNKER_VERSION
from email_assets.storage.accounts import AccountStore
from email_assets.storage.messages import MessageStore
from email_assets.storage.vectors import VectorStore


def _value(field: str | None) -> str | None:
    """A field's value: an EnvVar is read here only outside a run (at import, for a code version)."""
    return field.get_value() if isinstance(field, dg.EnvVar) else field


class MailStoreResource(dg.ConfigurableResource):
    """The project's tables (SQLite by default, PostgreSQL by URL) and what is kept in them."""

    database_url: Optional[str] = None  # noqa: UP045 - Dagster config types need Optional
    retention_days: Optional[str] = None  # noqa: UP045 - whole days; "0" keeps all
    keep_expunged: Optional[str] = None  # noqa: UP045 - "1" keeps mail deleted on the server

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        hosts.require_shared_database(context.instance, _value(self.database_url))
        hosts.record_host(context)

    def url(self) -> str:
        return _value(self.database_url) or settings.database_url()

    def messages(self) -> MessageStore:
        return MessageStore(self.url())

    def accounts(self) -> AccountStore:
        return AccountStore(self.url())

    def retention_window(self) -> settings.RetentionWindow:
        return settings.RetentionWindow(settings.retention_days(_value(self.retention_days)))

    def keeps_expunged(self) -> bool:
        return settings.keep_expunged(_value(self.keep_expunged))


class CredentialsResource(dg.ConfigurableResource):
    """Decrypts account secrets with the Fernet keys (first encrypts, all decrypt)."""

    fernet_keys: Optional[str] = None  # noqa: UP045 - only ever an EnvVar: never a literal in code

    def secret_box(self) -> SecretBox:
        keys = _value(self.fernet_keys)
        return SecretBox.from_keys_string(keys) if keys else SecretBox.from_environment()


class EmbeddingResource(dg.ConfigurableResource):
    """`local` (offline all-MiniLM-L6-v2), `local-int8` or `openai:MODEL`."""

    spec: Optional[str] = None  # noqa: UP045

    def embedder(self) -> Embedder:
        return embedder_from_spec(_value(self.spec) or settings.embedder_spec())

    def code_version(self) -> str:
        """`email_embeddings`' code version: the chunker's and the configured model's, so a
        change of embedder marks every embedding partition stale."""
        try:
            return pipeline.embedding_code_version(self.embedder())
        except UserError:
            return f"{CHUNKER_VERSION}+unconfigured"


class ChromaResource(dg.ConfigurableResource):
    """A directory (embedded Chroma) or http://host:port (a `chroma run` server)."""

    location: Optional[str] = None  # noqa: UP045

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        hosts.require_shared_chroma(context.instance, _value(self.location))

    def vectors(self, embedding_model: str) -> VectorStore:
        return VectorStore(_value(self.location) or settings.chroma_location(), embedding_model)


def from_env(name: str) -> dg.EnvVar | None:
    """`dg.EnvVar(name)` where the code location has the variable, else None (the field's default)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def configured_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "mail_store": MailStoreResource(
            database_url=from_env("EMAIL_ASSETS_DATABASE_URL"),
            retention_days=from_env("EMAIL_ASSETS_RETENTION_DAYS"),
            keep_expunged=from_env("EMAIL_ASSETS_KEEP_EXPUNGED"),
        ),
        "credentials": CredentialsResource(fernet_keys=from_env(KEYS_VARIABLE)),
        "embedding": EmbeddingResource(spec=from_env("EMAIL_ASSETS_EMBEDDER")),
        "chroma": ChromaResource(location=from_env("EMAIL_ASSETS_CHROMA")),
    }


RESOURCES = configured_resources()
