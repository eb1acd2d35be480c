"""Bearer tokens for XOAUTH2 (Gmail, Microsoft 365), read fresh at each login.

Tokens expire within the hour, so none is stored: the account names where to get one,
either an environment variable (`env:NAME`) or a command that prints it (`command:...`,
e.g. a provider CLI or a refresh script). Errors never include the token or the
command's output, which may hold one.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from email_assets.errors import AccountError

TOKEN_COMMAND_TIMEOUT = 30


def read_token(source: str) -> str:
    kind, _, value = source.partition(":")
    if kind == "env" and value:
        token = os.environ.get(value, "").strip()
        if not token:
            raise AccountError(f"the OAuth2 token variable {value} is not set or empty")
        return token
    if kind == "command" and value:
        try:
            result = subprocess.run(
                shlex.split(value), capture_output=True, text=True, timeout=TOKEN_COMMAND_TIMEOUT, check=False
            )
        except ValueError:  # shlex: an unclosed quote
            raise AccountError("the OAuth2 token command is not valid shell words: add the account again") from None
        except (OSError, subprocess.TimeoutExpired) as error:
            raise AccountError(f"the OAuth2 token command could not run: {type(error).__name__}") from None
        token = result.stdout.strip()
        if result.returncode != 0 or not token:
            raise AccountError(f"the OAuth2 token command exited with status {result.returncode} and no token")
        return token
    # Not echoed: a mistyped source may be the token itself.
    raise AccountError("the OAuth2 token source must be env:NAME or command:CMD: add the account again")
