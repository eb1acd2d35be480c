"""The ONNX Runtime embedder computes the vectors sentence-transformers computes, from a fresh export."""

from __future__ import annotations

import numpy as np
import pytest

from email_assets import local_model
from email_assets.embedding import LocalEmbedder

TEXTS = [
    "why did the database failover not happen during the outage?",
    "Grüße aus Köln – naïve café, 東京の会議は金曜日です",
    "",
    "> quoted line\nOn Tue, Ana wrote:\nthe reply below the quote " * 3,
    "replication lag hit 40 minutes " * 120,  # far past 256 word pieces: truncated like sentence-transformers
    "x",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(local_model.weights_directory()), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


@pytest.mark.slow  # exports the model from torch afresh (~20 s)
def test_fresh_export_gives_sentence_transformers_vectors(tmp_path, monkeypatch, reference) -> None:
    monkeypatch.setenv("EMAIL_ASSETS_MODEL_CACHE", str(tmp_path / "models"))
    path = local_model.ensure_exported()
    assert path.parent == tmp_path / "models" and path.stat().st_size > 80_000_000
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left behind
    vectors = local_model.OnnxSentenceEncoder(batch_size=4).encode(TEXTS)  # two batches, sorted by length
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_local_embedder_keeps_order_and_token_offsets(reference) -> None:
    embedder = LocalEmbedder()
    shuffled = [TEXTS[i] for i in (4, 0, 5, 1, 3, 2)]
    vectors = np.array(embedder.embed(shuffled))
    expected = reference[[4, 0, 5, 1, 3, 2]]
    assert ((vectors * expected).sum(axis=1) >= 0.9999).all()
    text = "Grüße aus Köln"
    offsets = embedder.token_offsets(text)
    assert "".join(text[start:end] for start, end in offsets) == text.replace(" ", "")  # word pieces, in order
    assert len(offsets) > len(text.split())  # the model's own tokens, not words


def test_int8_variant_is_close_and_never_mixes_with_fp32(tmp_path, monkeypatch, reference) -> None:
    monkeypatch.setenv("EMAIL_ASSETS_MODEL_CACHE", str(tmp_path / "models"))
    int8 = LocalEmbedder("int8")
    assert int8.model_name == "local:all-MiniLM-L6-v2-int8" != LocalEmbedder().model_name
    vectors = np.array(int8.embed(TEXTS))
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() >= 0.95 and cosines.mean() >= 0.98, cosines
    assert local_model.exported_model_path("int8").stat().st_size < local_model.exported_model_path().stat().st_size / 2
