"""Pack files after deletions: removed messages' bytes zeroed, emptied packs deleted.

Runs only after the rows that pointed at the bytes are gone, so a crash in between
leaves unreferenced bytes, never a row without its bytes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from email_assets.storage.store_base import StoreBase
from email_assets.storage.tables import raw_messages


def delete_raw_rows(connection: sa.Connection, *conditions: Any) -> tuple[int, list[tuple[str, str, int, int]]]:
    """Delete raw rows; returns how many, and the pack regions (account, pack, offset,
    size) their bytes occupied, to be erased once the deletion has committed."""
    regions = connection.execute(
        sa.select(raw_messages.c.account, raw_messages.c.pack, raw_messages.c.pack_offset, raw_messages.c.size).where(
            raw_messages.c.pack.is_not(None), *conditions
        )
    ).all()
    result = connection.execute(sa.delete(raw_messages).where(*conditions))
    return result.rowcount or 0, [tuple(region) for region in regions]


class PackLifecycle(StoreBase):
    """Erasing removed bytes and emptied packs."""

    def _erase(self, regions: list[tuple[str, str, int, int]]) -> None:
        """After their rows are gone: zero removed messages' bytes, then drop emptied packs."""
        if self.packs is None or not regions:
            return
        for account in sorted({owner for owner, *_ in regions}):
            self.packs.erase(account, [(pack, at, size) for owner, pack, at, size in regions if owner == account])
            self.remove_dead_packs(account)

    def remove_dead_packs(self, account: str) -> list[str]:
        """Delete the account's packs that no stored message points at any more."""
        if self.packs is None:
            return []

        def referenced(pack: str) -> bool:
            with self.engine.connect() as connection:
                return connection.execute(
                    sa.select(sa.exists().where(raw_messages.c.account == account, raw_messages.c.pack == pack))
                ).scalar_one()

        return [
            pack
            for pack in self.packs.packs(account)
            if self.packs.remove_if_unreferenced(account, pack, lambda pack=pack: referenced(pack))
        ]
