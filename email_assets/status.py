"""Which stores this process reads, and what is in them: `email-assets status`.

A new user's commonest dead end is a CLI pointed at another data dir than the one the
demo or `dagster dev` filled: every answer is then an honest "nothing". This says where
the data is looked for, whether that store already existed, and what each account holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from email_assets import settings
from email_assets.storage.accounts import AccountStore
from email_assets.storage.database import engine_for
from email_assets.storage.tables import chunks, folder_state, raw_messages
from email_assets.terminal import safe_text


@dataclass
class AccountStatus:
    name: str
    login: str
    health: str
    consecutive_failures: int
    last_error: str | None
    messages: int
    chunks: int
    last_sync_at: dt.datetime | None


@dataclass
class StoreStatus:
    data_dir: Path
    database: str  # the URL with any password hidden
    database_is_new: bool  # an embedded SQLite file that this call created
    chroma: str
    embedder: str
    accounts: list[AccountStatus] = field(default_factory=list)

    def account(self, name: str) -> AccountStatus | None:
        return next((account for account in self.accounts if account.name == name), None)

    def empty_store_note(self) -> str | None:
        """One line for stderr when there is nothing to read, naming where we looked."""
        if self.accounts:
            return None
        state = "was just created" if self.database_is_new else "has no accounts"
        return (
            f"note: the store {self.database} {state} (data dir {self.data_dir}); "
            "set EMAIL_ASSETS_DATA_DIR or EMAIL_ASSETS_DATABASE_URL to the one you filled, or add an account"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "database": self.database,
            "database_is_new": self.database_is_new,
            "chroma": self.chroma,
            "embedder": self.embedder,
            "accounts": [
                {**vars(account), "last_sync_at": account.last_sync_at.isoformat() if account.last_sync_at else None}
                for account in self.accounts
            ],
        }


def _sqlite_path(url: sa.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _per_account(connection: sa.Connection, statement: sa.Select) -> dict[str, Any]:
    return dict(connection.execute(statement).all())


def read_status() -> StoreStatus:
    url = sa.make_url(settings.database_url())
    sqlite_file = _sqlite_path(url)
    is_new = sqlite_file is not None and not sqlite_file.exists()
    engine = engine_for(url.render_as_string(hide_password=False))
    with engine.connect() as connection:
        messages = _per_account(
            connection, sa.select(raw_messages.c.account, sa.func.count()).group_by(raw_messages.c.account)
        )
        chunk_counts = _per_account(connection, sa.select(chunks.c.account, sa.func.count()).group_by(chunks.c.account))
        last_sync = _per_account(  # max() keeps the column type: aware UTC datetimes
            connection,
            sa.select(folder_state.c.account, sa.func.max(folder_state.c.last_sync_at)).group_by(
                folder_state.c.account
            ),
        )
    accounts = [
        AccountStatus(
            name=account.name,
            login=f"{account.username}@{account.host}:{account.port}",
            health="ok" if not account.consecutive_failures else "failing",
            consecutive_failures=account.consecutive_failures,
            last_error=account.last_error,
            messages=messages.get(account.name, 0),
            chunks=chunk_counts.get(account.name, 0),
            last_sync_at=last_sync.get(account.name),
        )
        for account in AccountStore(url.render_as_string(hide_password=False)).list()
    ]
    return StoreStatus(
        data_dir=settings.data_dir(),
        database=url.render_as_string(hide_password=True),
        database_is_new=is_new,
        chroma=settings.chroma_location(),
        embedder=settings.embedder_spec(),
        accounts=accounts,
    )


def format_status(status: StoreStatus) -> str:
    """The human-readable status; a server's error text and every name are escaped (terminal.py)."""
    lines = [
        f"data dir:  {safe_text(status.data_dir)}",
        f"database:  {safe_text(status.database)}" + ("  (new: nothing stored yet)" if status.database_is_new else ""),
        f"chroma:    {safe_text(status.chroma)}",
        f"embedder:  {safe_text(status.embedder)}",
    ]
    if not status.accounts:
        lines.append("accounts:  none (add one with `email-assets accounts add`)")
        return "\n".join(lines)
    lines.append("accounts:")
    for account in status.accounts:
        health = account.health
        if account.consecutive_failures:
            health += f" ({account.consecutive_failures} in a row: {safe_text(account.last_error)})"
        synced = account.last_sync_at.strftime("%Y-%m-%d %H:%M UTC") if account.last_sync_at else "never"
        lines.append(
            f"  {safe_text(account.name)}\t{safe_text(account.login)}\t{health}\t{account.messages} messages\t"
            f"{account.chunks} chunks\tlast sync {synced}"
        )
    return "\n".join(lines)
