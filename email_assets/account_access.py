"""How a stored account is reached: where its server is and what it logs in with.

Kept apart from `storage.accounts`, which only keeps rows: reaching an account decrypts a
secret or runs the operator's OAuth2 token command, and that belongs with the code that
logs in, not with the table. A row is not trusted: its secret is only released when the
endpoint sealed with it (see `credentials`) is the row's endpoint, and its token command
is the sealed one, never the `token_source` column.
"""

from __future__ import annotations

from dataclasses import replace

from email_assets import settings
from email_assets.credentials import Sealed, SecretBox
from email_assets.errors import AccountError
from email_assets.mail.imap_connect import ImapEndpoint
from email_assets.mail.imap_wire import DEFAULT_LIMITS
from email_assets.mail.oauth2 import read_token
from email_assets.storage.accounts import Account


def endpoint_of(account: Account, timeout: float = 30.0) -> ImapEndpoint:
    limits = replace(DEFAULT_LIMITS, max_message_bytes=settings.max_message_bytes())
    return ImapEndpoint(account.host, account.port, account.security, account.ca_certificate, timeout, limits)


def _describe(endpoint: dict) -> str:
    where = f"{endpoint.get('username')} on {endpoint.get('host')}:{endpoint.get('port')}"
    ca = (endpoint.get("ca_certificate") or "the system's")[:12]
    return f"{where} ({endpoint.get('security')}, {endpoint.get('mechanism')}, CA {ca})"


def _opened(account: Account, box: SecretBox) -> Sealed:
    """The account's sealed secrets, after checking they were sealed for this endpoint."""
    opened = box.unseal(account.encrypted_secret, account.name)
    if opened is None:
        if account.stored:
            raise AccountError(
                f"account {account.name!r} was stored by an earlier release, its secret not bound to its server: "
                f"check its server in `email-assets accounts list`, then `email-assets accounts seal {account.name}`"
            )
        # Being added in this process (the CLI checks the login before storing): not a row.
        return Sealed(
            account.secret_binding(), box.decrypt(account.encrypted_secret, account.name), account.token_source
        )
    row = account.secret_binding()
    if opened.endpoint != row:
        raise AccountError(
            f"account {account.name!r}: the accounts table says {_describe(row)} but its secret was sealed for "
            f"{_describe(opened.endpoint)}; refusing to send it: if you moved the account, add it again"
        )
    return opened


def login_secret(account: Account, box: SecretBox) -> str:
    """The decrypted password, or a fresh OAuth2 bearer token from the sealed token source."""
    opened = _opened(account, box)
    if account.mechanism == "xoauth2":
        return read_token(opened.token_source or "")
    return opened.password
