"""Where the real-world fixtures are: copies inside this repository, and CPython's email test data.

The copies (with their sources and licenses in `fixtures/real_mail/README.md`) keep a
fresh clone self-contained: nothing here reads a path beside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import test as cpython_tests

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real_mail"
CPYTHON_EMAIL_DATA = Path(os.path.dirname(cpython_tests.__file__)) / "test_email" / "data"
_NOT_MAIL = {"README.md", "NOTICE.txt", "MIT-LICENSE"}


def fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.name not in _NOT_MAIL)


def cpython_files() -> list[Path]:
    return sorted(CPYTHON_EMAIL_DATA.glob("msg_*.txt"))


def all_real_messages() -> list[Path]:
    files = fixture_files() + cpython_files()
    if len(files) < 100:
        raise RuntimeError(
            f"real mail fixtures missing: found {len(files)} files under {FIXTURES} and {CPYTHON_EMAIL_DATA}"
        )
    return files
