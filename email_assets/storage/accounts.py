"""Registered IMAP accounts, their encrypted secrets and their health.

The secret column only ever holds Fernet tokens; decryption happens at the moment of
login, in the process that logs in.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from email_assets.credentials import SecretBox
from email_assets.errors import AccountError, UserError
from email_assets.storage.database import engine_for
from email_assets.storage.tables import accounts

ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def validate_account_name(name: str) -> str:
    """Names become Dagster partition keys: no `|`, `,`, brackets or addresses."""
    if not ACCOUNT_NAME.match(name):
        raise UserError(f"account name {name!r} is not a slug: use lowercase letters, digits, '-' and '_' (max 64)")
    return name


@dataclass(frozen=True)
class Account:
    name: str
    host: str
    port: int
    username: str
    security: str
    folders: list[str]
    max_connections: int
    ca_file: str | None
    encrypted_secret: bytes
    mechanism: str = "login"  # or "xoauth2", with a bearer token from `token_source`
    token_source: str | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    last_success_at: dt.datetime | None = None

    def __repr__(self) -> str:  # never show the token, even encrypted, in logs
        return f"Account(name={self.name!r}, host={self.host!r}, username={self.username!r})"


class AccountStore:
    def __init__(self, database_url: str) -> None:
        self.engine = engine_for(database_url)

    def add(self, account: Account) -> None:
        validate_account_name(account.name)
        row = {
            "name": account.name,
            "host": account.host,
            "port": account.port,
            "username": account.username,
            "security": account.security,
            "folders": account.folders,
            "max_connections": account.max_connections,
            "ca_file": account.ca_file,
            "encrypted_secret": account.encrypted_secret,
            "mechanism": account.mechanism,
            "token_source": account.token_source,
            "created_at": dt.datetime.now(dt.UTC),
            "consecutive_failures": 0,
        }
        with self.engine.begin() as connection:
            exists = connection.execute(sa.select(accounts.c.name).where(accounts.c.name == account.name)).first()
            if exists:
                raise UserError(f"account {account.name!r} already exists: remove it first or pick another name")
            connection.execute(sa.insert(accounts), [row])

    def list(self) -> list[Account]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(accounts).order_by(accounts.c.name)).mappings().all()
        return [_account(row) for row in rows]

    def get(self, name: str) -> Account:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(accounts).where(accounts.c.name == name)).mappings().first()
        if row is None:
            raise AccountError(f"no account named {name!r}: see `email-assets accounts list`")
        return _account(row)

    def remove(self, name: str) -> None:
        with self.engine.begin() as connection:
            result = connection.execute(sa.delete(accounts).where(accounts.c.name == name))
        if not result.rowcount:
            raise AccountError(f"no account named {name!r}: see `email-assets accounts list`")

    def record_success(self, name: str) -> None:
        self._update(name, consecutive_failures=0, last_error=None, last_success_at=dt.datetime.now(dt.UTC))

    def record_reachable(self, *names: str) -> None:
        """The sensor reached these accounts: healthy again, though nothing was synced.
        One statement for a whole tick, touching only rows that were failing."""
        if not names:
            return
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(accounts)
                .where(accounts.c.name.in_(names), accounts.c.consecutive_failures > 0)
                .values(consecutive_failures=0, last_error=None)
            )

    def record_failure(self, name: str, error: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(accounts)
                .where(accounts.c.name == name)
                .values(consecutive_failures=accounts.c.consecutive_failures + 1, last_error=error[:500])
            )

    def rotate_secrets(self, box: SecretBox) -> int:
        with self.engine.begin() as connection:
            rows = connection.execute(sa.select(accounts.c.name, accounts.c.encrypted_secret)).all()
            for name, token in rows:
                connection.execute(
                    sa.update(accounts).where(accounts.c.name == name).values(encrypted_secret=box.rotate(token))
                )
        return len(rows)

    def _update(self, name: str, **values: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.update(accounts).where(accounts.c.name == name).values(**values))


def _account(row: sa.RowMapping) -> Account:
    return Account(
        name=row["name"],
        host=row["host"],
        port=row["port"],
        username=row["username"],
        security=row["security"],
        folders=list(row["folders"] or []),
        max_connections=row["max_connections"],
        ca_file=row["ca_file"],
        encrypted_secret=row["encrypted_secret"],
        mechanism=row["mechanism"] or "login",
        token_source=row["token_source"],
        consecutive_failures=row["consecutive_failures"] or 0,
        last_error=row["last_error"],
        last_success_at=row["last_success_at"],
    )
