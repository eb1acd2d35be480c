"""The `email-assets` command as a user meets it: installed entry point, help, one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from email_assets import settings
from email_assets.credentials import generate_key
from email_assets.storage.accounts import AccountStore
from email_assets_tests.conftest import add_account, run_cli

EXECUTABLE = shutil.which("email-assets") or str(Path(sys.executable).parent / "email-assets")


def cli(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, *args], input=stdin, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )


@pytest.mark.parametrize(
    "args", [[], ["keys"], ["accounts"], ["accounts", "add"], ["search"], ["status"], ["trace"]]
)
def test_help_everywhere(args: list[str]) -> None:
    result = cli(*args, "--help")
    assert result.returncode == 0 and "usage: email-assets" in result.stdout


def test_keys_generate_prints_a_usable_key(project_env) -> None:
    result = cli("keys", "generate")
    assert result.returncode == 0
    from email_assets.credentials import SecretBox

    key = result.stdout.strip()
    assert SecretBox([key]).decrypt(SecretBox([key]).encrypt("x")) == "x"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["accounts", "add", "Work|x", "--host", "h", "--username", "u", "--password-stdin"], {}, "is not a slug"),
        (
            ["accounts", "add", "work", "--host", "h", "--username", "u", "--password-stdin"],
            {"EMAIL_ASSETS_FERNET_KEYS": ""},
            "EMAIL_ASSETS_FERNET_KEYS is not set: generate one with `email-assets keys generate`",
        ),
        (
            ["accounts", "add", "work", "--host", "h", "--username", "u", "--password-stdin"],
            {"EMAIL_ASSETS_FERNET_KEYS": "garbage"},
            "key #1 is not a valid Fernet key",
        ),
        (["accounts", "add", "work", "--host", "h", "--username", "u"], {}, "--password-stdin"),
        (["accounts", "test", "nobody"], {}, "no account named 'nobody'"),
        (["accounts", "remove", "nobody"], {}, "no account named 'nobody'"),
        (["search", "x", "-k", "0"], {}, "argument -k: must be a whole number from 1 to 1000: '0'"),
        (["search", "x", "--since", "yesterday"], {}, "not a date"),
        (["trace", "no-such-chunk"], {}, "no chunk with id"),
        (["frobnicate"], {}, "invalid choice"),
        (
            ["search", "x"],
            {"EMAIL_ASSETS_EMBEDDER": "magic"},
            "EMAIL_ASSETS_EMBEDDER must be 'local', 'local-int8' or 'openai:MODEL'",
        ),
        (["accounts", "list"], {"EMAIL_ASSETS_DATABASE_URL": "nonsense://"}, "EMAIL_ASSETS_DATABASE_URL"),
        (["search", "x", "--account", "nosuch"], {}, "no account named 'nosuch' in sqlite:///"),
    ],
)
def test_user_mistakes_are_one_line_errors(project_env, args, env, message) -> None:
    AccountStore(settings.database_url())  # an existing, empty store: read-only commands refuse a missing one
    result = cli(*args, stdin="secret\n", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("email-assets: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_accounts_lifecycle(mail_user, instance, capsys) -> None:
    assert add_account(mail_user, "work", ["--folders", "INBOX"]) == 0
    assert add_account(mail_user, "work") == 2
    assert "already exists" in capsys.readouterr().err
    assert run_cli(["accounts", "test", "work"]) == 0
    assert "login ok, folders: INBOX" in capsys.readouterr().out
    assert run_cli(["accounts", "list"]) == 0
    assert f"work\t{mail_user.name}@127.0.0.1:{mail_user.server.imaps_port}\tssl\tok" in capsys.readouterr().out
    assert run_cli(["accounts", "remove", "work"]) == 0
    assert instance.get_dynamic_partitions("accounts") == []


def test_keys_rotate_reencrypts_with_the_first_key(mail_user, project_env, monkeypatch, capsys) -> None:
    assert add_account(mail_user, "work") == 0
    old = os.environ["EMAIL_ASSETS_FERNET_KEYS"]
    new = generate_key()
    monkeypatch.setenv("EMAIL_ASSETS_FERNET_KEYS", f"{new},{old}")
    assert run_cli(["keys", "rotate"]) == 0
    monkeypatch.setenv("EMAIL_ASSETS_FERNET_KEYS", new)  # the old key is gone for good
    assert run_cli(["accounts", "test", "work"]) == 0
    assert "login ok" in capsys.readouterr().out


def test_status_and_search_name_the_store_they_read(project_env) -> None:
    """A CLI pointed at a store with no accounts says so, instead of a quiet "no matches"
    (one pointed at no store at all is an error: test_cli_input.py)."""
    data_dir = project_env / "data"
    AccountStore(settings.database_url())
    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert f"data dir:  {data_dir}" in status.stdout
    assert f"database:  sqlite:///{data_dir / 'email_assets.sqlite'}\n" in status.stdout
    assert "accounts:  none" in status.stdout
    search = cli("search", "anything", "--json")
    assert search.returncode == 0 and search.stdout == ""
    assert search.stderr.startswith("note: the store sqlite:///") and "has no accounts" in search.stderr
    assert str(data_dir) in search.stderr and "Traceback" not in search.stderr


def test_status_hides_the_database_password(project_env) -> None:
    url = "postgresql+psycopg://reader:hunter2-secret@127.0.0.1:1/none"
    result = cli("status", env={"EMAIL_ASSETS_DATABASE_URL": url})
    assert result.returncode == 2 and "hunter2-secret" not in result.stderr + result.stdout


def test_loading_the_code_location_warns_about_nothing_of_ours(project_env) -> None:
    """What `dagster dev` prints on load: no deprecation or other warning raised in our code."""
    code = "import email_assets.definitions as d; d.defs.get_repository_def(); d.defs.resolve_job_def('email_sync_job')"
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    package = str(Path(__file__).resolve().parents[1] / "email_assets") + os.sep
    assert [line for line in result.stderr.splitlines() if line.startswith(package)] == []
