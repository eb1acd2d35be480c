"""Registered IMAP accounts, their encrypted secrets and their health.

The secret column only ever holds Fernet tokens, sealed to the account's endpoint (see
`credentials`); a new row is sealed on its way in, and decryption for a login happens at
the moment of login, in the process that logs in (`account_access`). The `token_source`
column is only read for rows written before sealing, which are refused at login.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from email_assets.credentials import Sealed, SecretBox
from email_assets.errors import AccountError, ConfigurationError, UserError
from email_assets.storage.database import engine_for
from email_assets.storage.tables import accounts

ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def validate_account_name(name: str) -> str:
    """Names become Dagster partition keys: no `|`, `,`, brackets or addresses."""
    if not ACCOUNT_NAME.fullmatch(name):  # match() would let a trailing newline through `$`
        raise UserError(f"account name {name!r} is not a slug: use lowercase letters, digits, '-' and '_' (max 64)")
    return name


def certificate_fingerprint(pem: str | None) -> str | None:
    """What a sealed secret binds of the CA: its SHA-256, so the token stays small."""
    return hashlib.sha256(pem.encode()).hexdigest() if pem else None


def _legacy_ca_file(path: str | None) -> str | None:
    """Rows of earlier releases named a CA file on the host that added them: read it where it
    exists, so `accounts seal` can store its PEM for every host."""
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError:
        return None


@dataclass(frozen=True)
class Account:
    name: str
    host: str
    port: int
    username: str
    security: str
    folders: list[str]
    max_connections: int
    ca_certificate: str | None  # PEM text of the CA to trust, else the system's
    encrypted_secret: bytes
    mechanism: str = "login"  # or "xoauth2", with a bearer token from `token_source`
    token_source: str | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    last_success_at: dt.datetime | None = None
    stored: bool = field(default=False, compare=False)  # read from the table, not built in this process

    def __repr__(self) -> str:  # never show the token, even encrypted, in logs
        return f"Account(name={self.name!r}, host={self.host!r}, username={self.username!r})"

    def secret_binding(self) -> dict[str, Any]:
        """Where the secret may be sent and how: what a sealed secret is bound to."""
        return {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username": self.username,
            "ca_certificate": certificate_fingerprint(self.ca_certificate),
            "mechanism": self.mechanism,
        }


def sealed_account(account: Account, box: SecretBox) -> Account:
    """`account` with its password and token source sealed to its endpoint.

    An account built in this process (the CLI encrypts the bare password) is sealed here;
    one already sealed is kept if it is sealed to this same endpoint.
    """
    opened = box.unseal(account.encrypted_secret, account.name)
    if opened is not None:
        if opened.endpoint != account.secret_binding():
            raise AccountError(f"account {account.name!r}: its secret is sealed to another server: add it again")
        return replace(account, token_source=None)
    password = box.decrypt(account.encrypted_secret, account.name)
    secret = box.seal(Sealed(account.secret_binding(), password, account.token_source))
    return replace(account, encrypted_secret=secret, token_source=None)


class AccountStore:
    def __init__(self, database_url: str) -> None:
        self.engine = engine_for(database_url)

    def add(self, account: Account, box: SecretBox | None = None) -> None:
        """Store a new account, its secrets sealed to its endpoint (`sealed_account`).

        Without `box` the keys come from the environment, as the CLI's do; a secret they
        cannot open is stored as given, and then refused at login (only benchmarks that
        never log in add such rows).
        """
        validate_account_name(account.name)
        if box is not None:
            account = sealed_account(account, box)
        else:
            with contextlib.suppress(ConfigurationError):
                account = sealed_account(account, SecretBox.from_environment())
        row = {
            "name": account.name,
            "host": account.host,
            "port": account.port,
            "username": account.username,
            "security": account.security,
            "folders": account.folders,
            "max_connections": account.max_connections,
            "ca_certificate": account.ca_certificate,
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

    def seal(self, name: str, box: SecretBox) -> bool:
        """Bind a row stored before sealing to the endpoint the row names now; False if it already was.

        The operator vouches for the row (`accounts list` shows its server): nothing else
        can tell an old row from a rewritten one.
        """
        account = self.get(name)
        if box.unseal(account.encrypted_secret, name) is not None:
            return False
        sealed = sealed_account(account, box)
        self._update(
            name, encrypted_secret=sealed.encrypted_secret, token_source=None, ca_certificate=account.ca_certificate
        )
        return True

    def rotate_secrets(self, box: SecretBox) -> int:
        """Re-encrypt every stored secret with the first key, all or none: a row that no key
        opens stops the rotation with its name (sealed or not, a token keeps its content)."""
        with self.engine.begin() as connection:
            rows = connection.execute(sa.select(accounts.c.name, accounts.c.encrypted_secret)).all()
            for name, token in rows:
                try:
                    rotated = box.rotate(token, name)
                except ConfigurationError as error:
                    raise ConfigurationError(f"{error}; nothing was re-encrypted") from None
                connection.execute(sa.update(accounts).where(accounts.c.name == name).values(encrypted_secret=rotated))
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
        ca_certificate=row["ca_certificate"] or _legacy_ca_file(row["ca_file"]),
        encrypted_secret=row["encrypted_secret"],
        mechanism=row["mechanism"] or "login",
        token_source=row["token_source"],
        consecutive_failures=row["consecutive_failures"] or 0,
        last_error=row["last_error"],
        last_success_at=row["last_success_at"],
        stored=True,
    )
