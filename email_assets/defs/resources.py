"""Dagster resources: thin, configured from the environment, secrets decrypted only at use.

Fields left unset fall back to the `EMAIL_ASSETS_*` variables (see `settings`), so a
deployment moves to PostgreSQL or a Chroma server by configuration alone, and no secret
ever sits in run config: the Fernet keys are read from the environment in the run process.
"""

from typing import Optional

import dagster as dg

from email_assets import settings
from email_assets.credentials import SecretBox
from email_assets.embedding import Embedder, embedder_from_spec
from email_assets.storage.accounts import AccountStore
from email_assets.storage.messages import MessageStore
from email_assets.storage.vectors import VectorStore


class MailStoreResource(dg.ConfigurableResource):
    """The project's tables (SQLite by default, PostgreSQL by URL)."""

    database_url: Optional[str] = None  # noqa: UP045 - Dagster config types need Optional

    def url(self) -> str:
        return self.database_url or settings.database_url()

    def messages(self) -> MessageStore:
        return MessageStore(self.url())

    def accounts(self) -> AccountStore:
        return AccountStore(self.url())


class CredentialsResource(dg.ConfigurableResource):
    """Decrypts account secrets with EMAIL_ASSETS_FERNET_KEYS from the run's environment."""

    def secret_box(self) -> SecretBox:
        return SecretBox.from_environment()


class EmbeddingResource(dg.ConfigurableResource):
    """`local` (offline all-MiniLM-L6-v2) or `openai:MODEL`."""

    spec: Optional[str] = None  # noqa: UP045

    def embedder(self) -> Embedder:
        return embedder_from_spec(self.spec or settings.embedder_spec())


class ChromaResource(dg.ConfigurableResource):
    """A directory (embedded Chroma) or http://host:port (a `chroma run` server)."""

    location: Optional[str] = None  # noqa: UP045

    def vectors(self, embedding_model: str) -> VectorStore:
        return VectorStore(self.location or settings.chroma_location(), embedding_model)
