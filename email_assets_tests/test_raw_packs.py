"""The pack files that hold raw bytes beside an embedded SQLite database (no server needed)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from email_assets.storage import raw_packs
from email_assets.storage.raw_packs import MissingRawBytesError, PackStore

ACCOUNT = "work"


def blobs(count: int, size: int = 3000) -> list[bytes]:
    return [hashlib.sha256(str(index).encode()).digest() * (size // 32) + b"%d" % index for index in range(count)]


def read_all(store: PackStore, places: list[tuple[str, int]], data: list[bytes]) -> list[bytes]:
    with store.reader() as read:
        return [read(ACCOUNT, pack, offset, len(blob)) for (pack, offset), blob in zip(places, data, strict=True)]


def test_appended_bytes_read_back_exactly(tmp_path: Path) -> None:
    store = PackStore(tmp_path)
    first, second = blobs(50), blobs(7, size=200_000)
    places = store.append(ACCOUNT, first) + store.append(ACCOUNT, second)
    store.make_durable(ACCOUNT)
    assert len({pack for pack, _ in places}) == 1  # one writer, one pack
    assert read_all(store, places, first + second) == first + second
    assert os.path.getsize(tmp_path / ACCOUNT / f"{places[0][0]}.pack") == sum(map(len, first + second))


def test_a_second_writer_gets_its_own_pack_and_a_released_one_is_reused(tmp_path: Path) -> None:
    one, two = PackStore(tmp_path), PackStore(tmp_path)
    [(pack_one, _)] = one.append(ACCOUNT, [b"a" * 10])
    [(pack_two, _)] = two.append(ACCOUNT, [b"b" * 10])
    assert pack_one != pack_two  # the first is locked while its writer may still commit rows
    one.release(ACCOUNT)
    two.release(ACCOUNT)
    [(again, offset)] = PackStore(tmp_path).append(ACCOUNT, [b"c" * 10])
    assert again == min(pack_one, pack_two) and offset == 10  # appended after what was there


def test_a_lock_held_by_another_process_is_respected(tmp_path: Path) -> None:
    holder = PackStore(tmp_path)
    [(held, _)] = holder.append(ACCOUNT, [b"x"])
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from email_assets.storage.raw_packs import PackStore
        store = PackStore(Path({str(tmp_path)!r}))
        [(pack, _)] = store.append({ACCOUNT!r}, [b"y"])
        print(pack, store.remove_if_unreferenced({ACCOUNT!r}, {held!r}, lambda: False))
        """
    )
    pack, removed = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    assert pack != held and removed == "False"
    assert (tmp_path / ACCOUNT / f"{held}.pack").exists()


def test_full_pack_rolls_over_and_stays_locked_until_release(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(raw_packs, "PACK_LIMIT", 10_000)
    store = PackStore(tmp_path)
    data = blobs(8)  # 3 KB each
    places = [place for chunk in (data[:4], data[4:]) for place in store.append(ACCOUNT, chunk)]
    first, second = places[0][0], places[-1][0]
    assert first != second and places[4] == (second, 0)
    other = PackStore(tmp_path)
    assert not other.remove_if_unreferenced(ACCOUNT, first, lambda: False)  # its rows may not be committed yet
    store.release(ACCOUNT)
    assert read_all(other, places, data) == data
    assert other.remove_if_unreferenced(ACCOUNT, first, lambda: False)
    assert not other.remove_if_unreferenced(ACCOUNT, second, lambda: True)  # still referenced: kept
    assert other.packs(ACCOUNT) == [second]


def test_lost_or_cut_pack_is_a_one_line_error(tmp_path: Path) -> None:
    store = PackStore(tmp_path)
    [(pack, offset)] = store.append(ACCOUNT, [b"z" * 100])
    store.release()
    path = tmp_path / ACCOUNT / f"{pack}.pack"
    os.truncate(path, 60)
    with store.reader() as read, pytest.raises(MissingRawBytesError, match="ends before 100$"):
        read(ACCOUNT, pack, offset, 100)
    path.unlink()
    with store.reader() as read, pytest.raises(MissingRawBytesError, match=f"pack {ACCOUNT}/{pack} is gone$"):
        read(ACCOUNT, pack, offset, 100)


def test_a_failed_write_is_a_one_line_error_and_shifts_no_later_offset(tmp_path: Path, monkeypatch) -> None:
    store = PackStore(tmp_path)
    first = store.append(ACCOUNT, [b"a" * 100])
    real_write = os.write

    def disk_full_half_way(fd: int, data: memoryview) -> int:
        real_write(fd, data[:50])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(raw_packs.os, "write", disk_full_half_way)
    with pytest.raises(raw_packs.PackWriteError, match="No space left on device"):
        store.append(ACCOUNT, [b"b" * 100])
    monkeypatch.setattr(raw_packs.os, "write", real_write)
    places = store.append(ACCOUNT, [b"c" * 100])
    assert places == [(first[0][0], 150)]  # after the 50 bytes the failed write left unreferenced
    assert read_all(store, first + places, [b"a" * 100, b"c" * 100]) == [b"a" * 100, b"c" * 100]


@pytest.mark.parametrize("punch_holes", [True, False], ids=["hole-punching", "zero-fill"])
def test_erase_zeroes_only_the_given_messages(tmp_path: Path, monkeypatch, punch_holes: bool) -> None:
    if not punch_holes:  # a file system (or libc) without fallocate hole punching
        monkeypatch.setattr(raw_packs, "_fallocate", None)
    store = PackStore(tmp_path)
    data = blobs(6, size=10_000)
    places = store.append(ACCOUNT, data)
    store.release()
    gone = [1, 2, 4]
    store.erase(ACCOUNT, [(*places[index], len(data[index])) for index in gone])
    with store.reader() as read:
        for index, ((pack, offset), blob) in enumerate(zip(places, data, strict=True)):
            assert read(ACCOUNT, pack, offset, len(blob)) == (bytes(len(blob)) if index in gone else blob)


def test_a_failed_flush_or_erase_is_a_storage_error(tmp_path: Path, monkeypatch) -> None:
    store = PackStore(tmp_path)
    [(pack, offset)] = store.append(ACCOUNT, [b"a" * 100])

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(raw_packs.os, "fdatasync", failing)
    with pytest.raises(raw_packs.PackWriteError, match="cannot flush raw bytes under .*Input/output error"):
        store.make_durable(ACCOUNT)
    with pytest.raises(raw_packs.PackWriteError, match="cannot erase removed mail in .*Input/output error"):
        store.erase(ACCOUNT, [(pack, offset, 100)])
