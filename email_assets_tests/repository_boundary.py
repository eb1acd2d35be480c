"""Fail any test that reads a path beside the repository (such as a `../shared` folder).

A user's clone has nothing beside it, so a test that passes only because a sibling
folder happens to exist on the developer's machine or in CI is a test a user cannot run.
An audit hook (PEP 578) sees every `open`, `os.listdir` and `os.scandir` in the test
process; one aimed at a sibling of the repository raises instead. Paths under the
temporary directory, the Python installation and the user's cache stay allowed even when
the repository happens to sit next to them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
_WATCHED_EVENTS = {"open", "os.listdir", "os.scandir"}


class ReadOutsideRepositoryError(PermissionError):
    """A test touched a path beside the repository, which a fresh clone does not have."""


def _allowed_roots() -> tuple[str, ...]:
    roots = {tempfile.gettempdir(), sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path.home() / ".cache")}
    return tuple(os.path.realpath(root) + os.sep for root in roots)


def _is_beside_repository(path: str, parent: str, inside: str, allowed: tuple[str, ...]) -> bool:
    absolute = os.path.abspath(path) + os.sep
    if not absolute.startswith(parent):  # cheap first test: most paths are elsewhere
        return False
    real = os.path.realpath(absolute) + os.sep
    return real.startswith(parent) and not real.startswith(inside) and not real.startswith(allowed)


def install() -> None:
    parent = str(REPOSITORY.parent).rstrip(os.sep) + os.sep
    inside = str(REPOSITORY) + os.sep
    allowed = _allowed_roots()

    def hook(event: str, args: tuple) -> None:
        if event not in _WATCHED_EVENTS or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, str) and _is_beside_repository(path, parent, inside, allowed):
            raise ReadOutsideRepositoryError(
                f"a test read {path!r}, outside the repository {REPOSITORY}: copy what it needs into the repository"
            )

    sys.addaudithook(hook)
