"""Where the real-world fixtures are: the shared corpus and CPython's email test data."""

from __future__ import annotations

import os
from pathlib import Path

import test as cpython_tests

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
CPYTHON_EMAIL_DATA = Path(os.path.dirname(cpython_tests.__file__)) / "test_email" / "data"


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md")


def cpython_files() -> list[Path]:
    return sorted(CPYTHON_EMAIL_DATA.glob("msg_*.txt"))


def all_real_messages() -> list[Path]:
    files = corpus_files() + cpython_files()
    if len(files) < 100:
        raise RuntimeError(
            f"real mail fixtures missing: found {len(files)} files under {CORPUS} and {CPYTHON_EMAIL_DATA}"
        )
    return files
