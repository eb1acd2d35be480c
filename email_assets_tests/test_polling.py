"""The sensor's polling at scale: bounded, per-call timeouts, and no account starves."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from email_assets.polling import poll_accounts, poll_order
from email_assets.storage.accounts import Account
from email_assets.storage.connection_slots import ConnectionSlots
from email_assets.storage.messages import MessageStore
from email_assets_tests.conftest import message, utc
from email_assets_tests.test_change_detection import TODAY


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def _account(name: str, port: int, mail_user=None) -> Account:  # noqa: ANN001
    server = mail_user.server if mail_user else None
    return Account(
        name=name,
        host="127.0.0.1",
        port=port,
        username=mail_user.name if mail_user else "nobody",
        security="ssl" if mail_user else "plain",
        folders=["INBOX"],
        max_connections=2,
        ca_certificate=server.ca_file.read_text() if server else None,
        encrypted_secret=b"",
    )


def test_order_is_never_polled_first_then_longest_waiting() -> None:
    accounts = [_account(name, 1) for name in ("c", "a", "b", "d")]
    assert [a.name for a in poll_order(accounts, {"a": 30.0, "b": 10.0, "c": 20.0})] == ["d", "b", "c", "a"]


def test_hung_servers_time_out_alone_and_cannot_starve_the_others(mail_user, silent_port, tmp_path: Path) -> None:
    mail_user.append([(message("hello", "Hello."), utc(TODAY))])
    store = MessageStore(f"sqlite:///{tmp_path / 'poll.sqlite'}")
    slots = ConnectionSlots(store.url)
    accounts = [
        _account("a-hung", silent_port),
        _account("b-hung", silent_port),
        _account("c-good", mail_user.server.imaps_port, mail_user),
    ]
    last_polled: dict[str, float] = {}

    def tick(budget: float):  # noqa: ANN202 - one at a time, 1.5 s per IMAP command
        return poll_accounts(
            accounts, {}, last_polled, lambda _a: mail_user.password, store, slots, budget, 1, timeout=1.5
        )

    first = tick(budget=2.0)  # a-hung times out alone; b-hung is cut off by the budget
    assert set(first.failed) == {"a-hung"} and "cannot connect" in first.failed["a-hung"]
    assert set(first.unreached) == {"b-hung", "c-good"} and not first.changes
    second = tick(budget=2.0)  # c-good was never polled: it goes first, before either hung one
    assert set(second.changes) == {"c-good"} and second.changes["c-good"].new == 1
    assert mail_user.password not in repr(first) + repr(second)
