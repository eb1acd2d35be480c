"""A fresh clone has nothing beside it: no test may read, and no file may cite, a sibling folder."""

from __future__ import annotations

import os
import subprocess

import pytest

from email_assets_tests.real_mail import FIXTURES, all_real_messages
from email_assets_tests.repository_boundary import REPOSITORY, ReadOutsideRepositoryError, forbidden_siblings

# Spelled in pieces so that this file does not match itself.
_OUTSIDE_REFERENCES = ("../" + "shared", "shared/" + "corpus", "PRODUCT" + ".md", "DAGSTER_" + "NOTES")


def test_reading_beside_the_repository_fails_the_test() -> None:
    with pytest.raises(ReadOutsideRepositoryError, match="outside the repository"):
        list(REPOSITORY.parent.iterdir())
    siblings = forbidden_siblings()
    for sibling in siblings:  # in CI and on the developers' machines: the shared folder, at least
        with pytest.raises(ReadOutsideRepositoryError, match="outside the repository"):
            open(os.path.join(sibling, "README.md"), "rb")  # noqa: SIM115 - it must not open at all


def test_reading_inside_the_repository_and_temp_dirs_is_allowed(tmp_path) -> None:
    (tmp_path / "x").write_text("ok")
    assert (tmp_path / "x").read_text() == "ok"
    assert (REPOSITORY / "pyproject.toml").read_bytes().startswith(b"[build-system]")


def test_no_tracked_file_cites_a_path_beside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPOSITORY, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    offenders = []
    for name in filter(None, tracked):
        path = REPOSITORY / name.decode()
        if FIXTURES in path.parents or not path.is_file():  # mail written by others is data
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        offenders += [f"{name.decode()}: {ref}" for ref in _OUTSIDE_REFERENCES if ref in text]
    assert offenders == []


def test_real_mail_fixtures_are_inside_the_repository() -> None:
    files = all_real_messages()
    inside = [path for path in files if REPOSITORY in path.parents]
    assert len(inside) >= 120  # the copied mail-parser and mikel-mail fixtures
    assert (FIXTURES / "README.md").read_text().count("license") >= 1
