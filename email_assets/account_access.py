"""How a stored account is reached: where its server is and what it logs in with.

Kept apart from `storage.accounts`, which only keeps rows: reaching an account decrypts a
secret or runs the operator's OAuth2 token command, and that belongs with the code that
logs in, not with the table.
"""

from __future__ import annotations

from email_assets.credentials import SecretBox
from email_assets.mail.imap_connect import ImapEndpoint
from email_assets.mail.oauth2 import read_token
from email_assets.storage.accounts import Account


def endpoint_of(account: Account, timeout: float = 30.0) -> ImapEndpoint:
    return ImapEndpoint(account.host, account.port, account.security, account.ca_file, timeout)


def login_secret(account: Account, box: SecretBox) -> str:
    """The decrypted password, or a fresh OAuth2 bearer token from the account's token source."""
    if account.mechanism == "xoauth2":
        return read_token(account.token_source or "")
    return box.decrypt(account.encrypted_secret)
