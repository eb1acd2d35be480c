"""One look at every account: concurrent, bounded, fair, each failure kept to its account.

A sensor tick has a budget (Dagster cancels a slow evaluation). Accounts are polled
`concurrency` at a time, each IMAP command with its own timeout, least recently polled
first: an account the last tick did not reach goes first in this one, and one that hung
goes last, so a few slow servers cannot starve the rest. An account whose connection
slots are all held by runs is skipped (a running sync is about to see its mail anyway),
not counted as failing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from email_assets.account_access import endpoint_of
from email_assets.errors import UserError
from email_assets.mail.changes import FLAG_SWEEP_SECONDS, FolderMarks, MailboxChanges, StoredLocations, detect_changes
from email_assets.mail.imap_connect import connect, without_secret
from email_assets.storage.accounts import Account
from email_assets.storage.connection_slots import ConnectionSlots

DEFAULT_CONCURRENCY = 16
CALL_TIMEOUT_SECONDS = 10.0


@dataclass
class PollResult:
    changes: dict[str, MailboxChanges] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # account -> one-line reason, secret-free
    busy: list[str] = field(default_factory=list)
    unreached: list[str] = field(default_factory=list)  # the budget ran out first
    seconds: float = 0.0


def poll_order(accounts: list[Account], last_polled: dict[str, float]) -> list[Account]:
    """Never-polled accounts first, then the longest waiting; ties by name for a stable order."""
    return sorted(accounts, key=lambda account: (last_polled.get(account.name, 0.0), account.name))


async def _poll_one(
    account: Account,
    secret_of: Callable[[Account], str],
    previous: FolderMarks,
    stored: StoredLocations,
    slots: ConnectionSlots,
    timeout: float,
    sweep_seconds: float,
) -> MailboxChanges | None:
    """The account's changes, or None when all its connection slots are in use."""
    holder = uuid.uuid4().hex
    slot = await asyncio.to_thread(slots.try_acquire, account.name, account.max_connections, holder)
    if slot is None:
        return None
    secret = ""
    try:
        secret = await asyncio.to_thread(secret_of, account)  # may run an OAuth2 token command
        endpoint = endpoint_of(account, timeout=timeout)
        async with connect(endpoint, account.username, secret, account.mechanism, attempts=1) as session:
            folders = account.folders or await session.default_folders()
            return await detect_changes(session, account.name, folders, previous, stored, time.time(), sweep_seconds)
    except UserError as error:
        raise UserError(without_secret(str(error), secret)) from None
    except Exception as error:  # noqa: BLE001 - one account's failure must not end the tick
        reason = without_secret(str(error).splitlines()[0] if str(error) else type(error).__name__, secret)
        raise UserError(f"{endpoint_of(account).describe()}: {reason[:200]}") from None
    finally:
        await asyncio.to_thread(slots.release, account.name, slot, holder)


def poll_accounts(
    accounts: list[Account],
    marks: dict[str, FolderMarks],
    last_polled: dict[str, float],
    secret_of: Callable[[Account], str],
    stored: StoredLocations,
    slots: ConnectionSlots,
    budget_seconds: float,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = CALL_TIMEOUT_SECONDS,
    sweep_seconds: float = FLAG_SWEEP_SECONDS,
) -> PollResult:
    """Poll `accounts` (see the module's docstring); `last_polled` is updated in place."""
    result = PollResult()
    if not accounts:  # asyncio.wait refuses an empty set
        return result
    started = time.monotonic()

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def guarded(account: Account) -> None:
            async with gate:
                if time.monotonic() - started > budget_seconds:
                    result.unreached.append(account.name)
                    return
                # Counted as polled when its turn starts: an account that hangs until the
                # budget ends goes to the back of the line, not to the front of the next tick.
                last_polled[account.name] = time.time()
                try:
                    changes = await _poll_one(
                        account, secret_of, marks.get(account.name, {}), stored, slots, timeout, sweep_seconds
                    )
                except UserError as error:
                    result.failed[account.name] = str(error)
                    return
                if changes is None:
                    result.busy.append(account.name)
                else:
                    result.changes[account.name] = changes

        tasks = {asyncio.ensure_future(guarded(account)): account for account in poll_order(accounts, last_polled)}
        done, pending = await asyncio.wait(tasks, timeout=budget_seconds)
        for task in pending:  # started but not finished in time: polled first next tick
            task.cancel()
            result.unreached.append(tasks[task].name)
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()

    asyncio.run(run())
    result.seconds = time.monotonic() - started
    return result
