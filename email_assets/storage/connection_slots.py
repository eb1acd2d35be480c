"""At most `max_connections` IMAP sessions per account, across every process and machine.

Providers cap simultaneous connections per account (Gmail: 15, many hosts: 2-5) and
answer the excess with errors that look like outages. Dagster's run-tag limit caps runs
per account, but not a sensor tick or a second code location; a lease row per open
session in the project's own database does, on SQLite and PostgreSQL alike. A lease
expires on its own, so a killed process cannot hold a slot forever. Expiry is read from
the database's clock, not each host's: with runs on several hosts, a host whose clock runs
ahead would otherwise take every other host's live slots as expired.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Iterator

import sqlalchemy as sa

from email_assets.errors import AccountError
from email_assets.storage.database import engine_for
from email_assets.storage.tables import connection_leases

# Short leases, renewed while held: a live sync of any length keeps its slot, and a killed
# one frees it within LEASE_SECONDS instead of the hour a fixed lease had to allow for.
LEASE_SECONDS = 120
RENEW_EVERY_SECONDS = 30


class SlotsBusyError(AccountError):
    """Every connection slot of the account stayed taken: the account is busy, not broken."""


class ConnectionSlots:
    def __init__(self, database_url: str) -> None:
        self.engine = engine_for(database_url)

    def now(self) -> dt.datetime:
        """The clock every host shares: PostgreSQL's; SQLite is one host's file, so that host's."""
        if self.engine.dialect.name != "postgresql":
            return dt.datetime.now(dt.UTC)
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.now())).scalar_one().astimezone(dt.UTC)

    def try_acquire(self, account: str, limit: int, holder: str) -> int | None:
        now = self.now()
        with self.engine.begin() as connection:
            connection.execute(
                sa.delete(connection_leases).where(
                    connection_leases.c.account == account, connection_leases.c.expires_at < now
                )
            )
        for slot in range(limit):
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        sa.insert(connection_leases).values(
                            account=account,
                            slot=slot,
                            holder=holder,
                            expires_at=now + dt.timedelta(seconds=LEASE_SECONDS),
                        )
                    )
                return slot
            except sa.exc.IntegrityError:
                continue
        return None

    def release(self, account: str, slot: int, holder: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.delete(connection_leases).where(
                    connection_leases.c.account == account,
                    connection_leases.c.slot == slot,
                    connection_leases.c.holder == holder,
                )
            )

    @contextlib.contextmanager
    def hold(self, account: str, limit: int, wait_seconds: float = 600) -> Iterator[int]:
        """Wait (with jitter) for a free slot; one-line error when none frees up in time."""
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + wait_seconds
        pause = 0.2
        while (slot := self.try_acquire(account, limit, holder)) is None:
            if time.monotonic() >= deadline:
                raise SlotsBusyError(
                    f"all {limit} IMAP connections of account {account!r} stayed in use for {wait_seconds:.0f}s: "
                    "raise --max-connections or wait for the running syncs"
                )
            time.sleep(min(random.uniform(pause / 2, pause), max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 5.0)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(account, slot, holder, stop), name=f"lease-{account}-{slot}", daemon=True
        )
        renewer.start()
        try:
            yield slot
        finally:
            stop.set()
            renewer.join()
            self.release(account, slot, holder)

    def _renew(self, account: str, slot: int, holder: str, stop: threading.Event) -> None:
        while not stop.wait(RENEW_EVERY_SECONDS):
            with contextlib.suppress(sa.exc.SQLAlchemyError):  # a missed renewal is retried; the lease has slack
                self.renew(account, slot, holder)

    def renew(self, account: str, slot: int, holder: str) -> bool:
        """Push the lease's expiry out again; False when it was lost (expired and taken)."""
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.update(connection_leases)
                .where(
                    connection_leases.c.account == account,
                    connection_leases.c.slot == slot,
                    connection_leases.c.holder == holder,
                )
                .values(expires_at=self.now() + dt.timedelta(seconds=LEASE_SECONDS))
            )
            return bool(result.rowcount)
