"""XOAUTH2 logins on Dovecot, whose oauth2 passdb asks a token introspection endpoint
(RFC 7662) served here, as Gmail's and Microsoft's tokens would be checked upstream."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from email_assets.defs.materialize import materialize_partitions
from email_assets_tests.conftest import add_account, message, run_cli, utc

DAY = dt.date(2026, 11, 20)
GOOD_TOKEN = "ya29.good-token-for-tests"


@pytest.fixture
def introspection(dovecot) -> Iterator[dict[str, str]]:
    """token -> user name; tokens not in it are inactive."""
    valid: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            token = parse_qs(body).get("token", [""])[0]
            user = valid.get(token)
            answer = json.dumps({"active": True, "username": user} if user else {"active": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", dovecot.oauth2_port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield valid
    finally:
        server.shutdown()
        server.server_close()


def add_oauth2_account(mail_user, name: str, source: list[str]) -> int:
    server = mail_user.server
    return run_cli(
        [
            "accounts",
            "add",
            name,
            "--host",
            server.host,
            "--port",
            str(server.imaps_port),
            "--username",
            mail_user.name,
            "--ca-file",
            str(server.ca_file),
            *source,
        ]
    )


def test_xoauth2_with_token_from_env_and_command(mail_user, instance, introspection, monkeypatch, capsys) -> None:
    introspection[GOOD_TOKEN] = mail_user.name
    mail_user.append([(message("oauth mail", "fetched with a bearer token"), utc(DAY))])
    monkeypatch.setenv("MAIL_TOKEN", GOOD_TOKEN)
    assert add_oauth2_account(mail_user, "cloud", ["--oauth2-token-env", "MAIL_TOKEN"]) == 0
    assert "login verified" in capsys.readouterr().out
    assert add_oauth2_account(mail_user, "cloud2", ["--oauth2-token-command", f"echo {GOOD_TOKEN}"]) == 0
    result = materialize_partitions(instance, "cloud", [DAY])[0]
    assert result.success
    raw = next(
        e
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == "raw_messages"
    )
    assert raw.event_specific_data.materialization.metadata["fetched"].value == 1
    for record in instance.get_records_for_run(result.run_id).records:
        assert GOOD_TOKEN not in str(record.event_log_entry)


def test_refused_token_is_a_prompt_one_line_error(mail_user, instance, introspection, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MAIL_TOKEN", "expired-token")
    started = time.monotonic()
    assert add_oauth2_account(mail_user, "cloud", ["--oauth2-token-env", "MAIL_TOKEN"]) == 2
    assert time.monotonic() - started < 5  # the SASL error challenge is answered, no timeout
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "was refused" in error and "expired-token" not in error
    monkeypatch.delenv("MAIL_TOKEN")
    assert add_oauth2_account(mail_user, "cloud", ["--oauth2-token-env", "MAIL_TOKEN"]) == 2
    assert "the OAuth2 token variable MAIL_TOKEN is not set or empty" in capsys.readouterr().err
    assert add_oauth2_account(mail_user, "cloud", ["--oauth2-token-command", "false"]) == 2
    assert "token command exited with status 1" in capsys.readouterr().err


def test_debug_logging_of_the_imap_library_never_shows_credentials(
    mail_user, project_env, introspection, monkeypatch, caplog
) -> None:
    import base64
    import logging

    introspection[GOOD_TOKEN] = mail_user.name
    monkeypatch.setenv("MAIL_TOKEN", GOOD_TOKEN)
    with caplog.at_level(logging.DEBUG, logger="aioimaplib"):
        assert add_oauth2_account(mail_user, "cloud", ["--oauth2-token-env", "MAIL_TOKEN"]) == 0
        assert add_account(mail_user, "plain") == 0
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Sending" in logged and "[credentials redacted]" in logged
    sasl = base64.b64encode(f"user={mail_user.name}\1auth=Bearer {GOOD_TOKEN}\1\1".encode()).decode()
    for secret in (GOOD_TOKEN, sasl, mail_user.password):
        assert secret not in logged
