"""The Chroma collection of chunk vectors: embedded PersistentClient or a `chroma run` server.

One collection per embedding model (vectors of different models are not comparable and
may differ in dimension). Ids are chunk ids, so upserts are idempotent; the partition's
chunk table says which ids exist, so orphans can be deleted precisely. An embedded store
holds the mail's text: its directory is its owner's alone (0700), and its files are
made 0600 after each write (Chroma creates them with the process umask).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from email_assets.errors import ConfigurationError
from email_assets.settings import private_directory
from email_assets.storage.database import make_private

CHROMA_VARIABLE = "EMAIL_ASSETS_CHROMA"

# Chroma's HNSW lost 132 of 4,000 top-10 hits that exact search finds on the eval's 9,838
# chunks (ef_search 256; 7 of 300 at the default 100). Up to this many vectors a query
# reads them all and ranks exactly (0.3 s for 10,000 on 2 cores); beyond, HNSW answers.
EXACT_SEARCH_MAX = 20_000
WRITER_LOCK_FILE = ".email_assets-writer.lock"
EF_SEARCH = 256
EF_CONSTRUCTION = 200


def collection_name(embedding_model: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", embedding_model).strip("-._")
    return f"email_chunks-{slug}"[:512]


class VectorStore:
    def __init__(self, location: str, embedding_model: str) -> None:
        self.location = location
        self.embedding_model = embedding_model
        self.collection_name = collection_name(embedding_model)

    @property
    def is_server(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    @contextlib.contextmanager
    def exclusive_writer(self) -> Iterator[None]:
        """Hold the embedded store's single-writer lock for a whole write step.

        An embedded Chroma store has one writer at a time. Dagster's concurrency pools
        cannot promise that: a run worker that is SIGKILLed (an OOM kill) keeps its pool
        claim until someone marks the run failed, and every later embedding step then waits
        forever. An OS file lock dies with its process. A Chroma server needs no lock.
        """
        if self.is_server:
            yield
            return
        directory = self._directory()
        descriptor = os.open(directory / WRITER_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with open(descriptor, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                self._make_files_private()
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _directory(self) -> Path:
        return private_directory(Path(self.location), f"{CHROMA_VARIABLE} (or EMAIL_ASSETS_DATA_DIR, its default)")

    def _make_files_private(self) -> None:
        """Chroma writes its SQLite file and index segments with the umask's mode (0644):
        unreachable by others inside the 0700 directory, and 0600 themselves from here."""
        if self.is_server:
            return
        for root, directories, files in os.walk(self.location):
            for name in (*directories, *files):
                make_private(os.path.join(root, name))

    @cached_property
    def client(self):  # noqa: ANN201 - chromadb's ClientAPI, imported lazily
        import chromadb

        if self.is_server:
            url = urlparse(self.location)
            if not url.hostname:
                raise ConfigurationError(f"EMAIL_ASSETS_CHROMA is not a valid URL: {self.location!r}")
            return chromadb.HttpClient(
                host=url.hostname, port=url.port or (443 if url.scheme == "https" else 8000), ssl=url.scheme == "https"
            )
        directory = self._directory()
        make_private(directory / "chroma.sqlite3")  # before Chroma opens it: its -wal/-shm follow
        client = chromadb.PersistentClient(path=self.location)
        self._make_files_private()
        return client

    @cached_property
    def collection(self):  # noqa: ANN201
        collection = self.client.get_or_create_collection(
            self.collection_name,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine", "ef_search": EF_SEARCH, "ef_construction": EF_CONSTRUCTION}},
            metadata={"embedding_model": self.embedding_model},
        )
        hnsw = (collection.configuration or {}).get("hnsw") or {}
        if (hnsw.get("ef_search") or 0) < EF_SEARCH:  # a collection made by an earlier release
            collection.modify(configuration={"hnsw": {"ef_search": EF_SEARCH}})
        return collection

    @cached_property
    def _batch_size(self) -> int:
        return max(1, min(1000, self.client.get_max_batch_size()))

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), self._batch_size):
            result = self.collection.get(ids=list(ids[start : start + self._batch_size]), include=[])
            found.update(result["ids"])
        return found

    def upsert(
        self,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        for start in range(0, len(ids), self._batch_size):
            end = start + self._batch_size
            self.collection.upsert(
                ids=list(ids[start:end]),
                embeddings=[list(vector) for vector in embeddings[start:end]],
                documents=list(documents[start:end]),
                metadatas=list(metadatas[start:end]),
            )
        self._make_files_private()

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]) -> None:
        """New metadata for stored chunks; their vectors and documents stay as they are."""
        for start in range(0, len(ids), self._batch_size):
            end = start + self._batch_size
            self.collection.update(ids=list(ids[start:end]), metadatas=list(metadatas[start:end]))
        self._make_files_private()

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), self._batch_size):
            self.collection.delete(ids=list(ids[start : start + self._batch_size]))
        self._make_files_private()

    def get(
        self, ids: Sequence[str], include: Sequence[str] = ("metadatas", "documents", "embeddings")
    ) -> dict[str, Any]:
        return self.collection.get(ids=list(ids), include=list(include))

    def query(self, embedding: Sequence[float], k: int, where: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The `k` nearest chunks: exact up to EXACT_SEARCH_MAX vectors, HNSW beyond."""
        if self.count() <= EXACT_SEARCH_MAX:
            return self._exact_query(embedding, k, where)
        return self._approximate_query(embedding, k, where)

    def _exact_query(self, embedding: Sequence[float], k: int, where: dict[str, Any] | None) -> list[dict[str, Any]]:
        import numpy as np

        candidates = self.collection.get(where=where or None, include=["embeddings"])
        if not candidates["ids"]:
            return []
        similarities = np.asarray(candidates["embeddings"], dtype=np.float32) @ np.asarray(embedding, dtype=np.float32)
        top = np.argsort(-similarities, kind="stable")[:k]
        ids = [candidates["ids"][index] for index in top]
        found = self.collection.get(ids=ids, include=["documents", "metadatas"])
        by_id = dict(zip(found["ids"], zip(found["documents"], found["metadatas"], strict=True), strict=True))
        return [
            {"chunk_id": chunk, "text": by_id[chunk][0], "metadata": by_id[chunk][1], "distance": 1.0 - float(score)}
            for chunk, score in zip(ids, similarities[top], strict=True)
        ]

    def _approximate_query(
        self, embedding: Sequence[float], k: int, where: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        result = self.collection.query(
            query_embeddings=[list(embedding)],
            n_results=k,
            where=where or None,
            include=["documents", "metadatas", "distances"],
        )
        hits = []
        for chunk_id, document, metadata, distance in zip(
            result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0], strict=True
        ):
            hits.append({"chunk_id": chunk_id, "text": document, "metadata": metadata, "distance": distance})
        return hits

    def count(self) -> int:
        return self.collection.count()
