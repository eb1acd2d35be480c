"""Fail any test that reads a path beside the repository (a folder of fixtures next to the clone, say).

A user's clone has nothing beside it, so a test that passes only because a sibling
folder happens to exist on the developer's machine or in CI is a test a user cannot run.
An audit hook (PEP 578) sees every `open`, `os.listdir` and `os.scandir` in the test
process; one aimed at the repository's parent folder, or at anything that stood beside
the repository when the suite started, raises instead. Siblings that hold the Python
installation, the temporary directory or the user's cache stay allowed, and files that
tests create later (when the repository itself sits in the temporary directory) too.
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


def _allowed_roots() -> list[str]:
    roots = {tempfile.gettempdir(), sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path.home() / ".cache")}
    return [os.path.realpath(root) + os.sep for root in roots]


def _forbidden_siblings(parent: Path) -> tuple[str, ...]:
    """What stands beside the repository now, less what holds Python, temp files or caches."""
    allowed = _allowed_roots()
    forbidden = []
    for entry in os.scandir(parent):
        real = os.path.realpath(entry.path) + os.sep
        if real == str(REPOSITORY) + os.sep:
            continue
        if any(real.startswith(root) or root.startswith(real) for root in allowed):
            continue
        forbidden.append(real)
    return tuple(forbidden)


_forbidden: tuple[str, ...] = ()


def forbidden_siblings() -> tuple[str, ...]:
    """The siblings `install` found (listing the parent again would itself be refused)."""
    return _forbidden


def install() -> None:
    global _forbidden
    parent = str(REPOSITORY.parent).rstrip(os.sep) + os.sep
    _forbidden = forbidden = _forbidden_siblings(REPOSITORY.parent)

    def hook(event: str, args: tuple) -> None:
        if event not in _WATCHED_EVENTS or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return
        absolute = os.path.abspath(path) + os.sep
        if not absolute.startswith(parent):  # cheap first test: most paths are elsewhere
            return
        real = os.path.realpath(absolute.rstrip(os.sep)) + os.sep
        if real == parent or real.startswith(forbidden):
            raise ReadOutsideRepositoryError(
                f"a test read {path!r}, outside the repository {REPOSITORY}: copy what it needs into the repository"
            )

    sys.addaudithook(hook)
