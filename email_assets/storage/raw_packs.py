"""Raw message bytes in append-only pack files beside an embedded SQLite database.

Through SQLite every byte of a message is written twice (into the WAL, then into the
database file at checkpoint) plus page slack: 263 MB of writes for 92 MB of mail, which
made storing, not reading IMAP, the limit of a sync. A pack is written once. The order of
writes keeps the archive safe: a batch is appended and fdatasync'ed *before* the rows
that point into it commit, so a committed row always points at durable bytes, and a crash
in between leaves only unreferenced bytes at the end of a pack. (Dovecot's mdbox keeps
mail the same way: many messages per file, an index beside them.)

A writer holds an exclusive `flock` on the pack it appends to, so concurrent syncs of one
account (up to its `max_connections`) never interleave; a pack that is not locked is
reused until it reaches `PACK_LIMIT`. The bytes of a removed message are zeroed and their
blocks returned at once (`erase`, hole punching); a pack none of whose messages is
referenced any more is deleted, under the same lock (`remove_if_unreferenced`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from email_assets.errors import UserError
from email_assets.storage.database import make_private

PACK_LIMIT = 256 * 1024 * 1024
_SUFFIX = ".pack"
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
_fallocate = getattr(ctypes.CDLL(None, use_errno=True), "fallocate", None)  # Linux (glibc, musl)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class PackWriteError(UserError):
    """Raw bytes could not be written (disk full, permissions): the batch is not stored."""


class MissingRawBytesError(UserError):
    """A row points at pack bytes that are not there: the pack directory was damaged."""


class _Writer:
    """One open, locked pack of one account."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def size(self) -> int:
        """Where the next append lands: read from the file each time, so a failed partial
        write (disk full) shifts no later offset. Nobody else appends while we hold the lock."""
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        os.close(self.fd)  # releases the flock


def _lock_if_current(path: Path, create: bool = False) -> int | None:
    """Open and exclusively lock `path`; None if another process holds it or it was
    deleted meanwhile (a lock on an unlinked inode would take bytes into the void)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
    except FileNotFoundError:  # removed since it was listed
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None


def _close_all(writers: dict[str, _Writer], retired: dict[str, list[_Writer]]) -> None:
    for writer in [*writers.values(), *(old for olds in retired.values() for old in olds)]:
        writer.close()


def _punch_hole(fd: int, offset: int, size: int) -> None:
    """Zero a byte range and hand its blocks back to the file system; where the file
    system cannot punch holes, overwrite it with zeros (the bytes still go)."""
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if _fallocate is not None and _fallocate(fd, mode, offset, size) == 0:
        return
    zeros = bytes(min(size, 1 << 20))
    done = 0
    while done < size:
        done += os.pwrite(fd, zeros[: size - done], offset + done)


def _coalesced(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent spans as one: a hole punched per message would leave the block they
    share allocated."""
    merged: list[tuple[int, int]] = []
    for offset, size in sorted(spans):
        if merged and merged[-1][0] + merged[-1][1] == offset:
            merged[-1] = (merged[-1][0], merged[-1][1] + size)
        else:
            merged.append((offset, size))
    return merged


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PackStore:
    """The packs of one database: `<directory>/<account>/<pack>.pack`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writers: dict[str, _Writer] = {}
        self._retired: dict[str, list[_Writer]] = {}  # full packs whose last rows may not have committed
        weakref.finalize(self, _close_all, self._writers, self._retired)  # a store dropped without release
        self._lock = threading.Lock()  # batches of one account may come from several threads

    def append(self, account: str, blobs: Sequence[bytes]) -> list[tuple[str, int]]:
        """Write blobs to the account's pack; returns (pack name, offset) for each, in
        order. Not durable until `make_durable`: commit no row pointing here before it."""
        with self._lock:
            try:
                writer = self._writer(account)
                if writer.size() >= PACK_LIMIT:  # full: a new pack, the old one durable and kept locked
                    os.fdatasync(writer.fd)
                    self._retired.setdefault(account, []).append(self._writers.pop(account))
                    writer = self._writer(account)
                start = writer.size()
                data = memoryview(b"".join(blobs))
                written = 0
                while written < len(data):
                    written += os.write(writer.fd, data[written:])
            except OSError as error:
                raise PackWriteError(f"cannot write raw bytes under {self.directory / account}: {error}") from None
            places = []
            for blob in blobs:
                places.append((writer.path.stem, start))
                start += len(blob)
            return places

    def make_durable(self, account: str) -> None:
        """fdatasync what was appended for the account so far.

        Outside the lock (on a duplicate of the descriptor), so the next batch can be
        appended while this one goes to disk.
        """
        with self._lock:
            writer = self._writers.get(account)
            if writer is None:
                return
            fd = os.dup(writer.fd)
        try:
            os.fdatasync(fd)
        except OSError as error:  # the bytes may not be on disk: no row may point at them
            raise PackWriteError(f"cannot flush raw bytes under {self.directory / account}: {error}") from None
        finally:
            os.close(fd)

    def release(self, account: str | None = None) -> None:
        """Unlock the packs written so far, for other writers: only once every row that
        points into them has committed (until then the lock keeps them from removal)."""
        with self._lock:
            for name in [account] if account is not None else list(self._writers | self._retired):
                for writer in [*self._retired.pop(name, []), *filter(None, [self._writers.pop(name, None)])]:
                    writer.close()

    def _writer(self, account: str) -> _Writer:
        if account in self._writers:
            return self._writers[account]
        folder = self.directory / account
        for directory in (self.directory, folder):  # mail: its owner's alone, like the packs (0600)
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            make_private(directory)  # made 0755 by an earlier release
        for path in sorted(folder.glob(f"*{_SUFFIX}")):
            if (fd := _lock_if_current(path)) is not None:
                if os.fstat(fd).st_size < PACK_LIMIT:
                    break
                os.close(fd)
        else:
            path = folder / f"{uuid.uuid4().hex}{_SUFFIX}"
            fd = _lock_if_current(path, create=True)
            assert fd is not None, "a fresh random name cannot be locked by anyone else"
            _fsync_directory(folder)  # the new file's name must survive a crash with its bytes
        self._writers[account] = _Writer(path, fd)
        return self._writers[account]

    @contextlib.contextmanager
    def reader(self) -> Iterator[Callable[[str, str, int, int], bytes]]:
        """`read(account, pack, offset, size)` with each pack opened once."""
        files: dict[tuple[str, str], int] = {}

        def read(account: str, pack: str, offset: int, size: int) -> bytes:
            fd = files.get((account, pack))
            if fd is None:
                try:
                    fd = files[(account, pack)] = os.open(self._path(account, pack), os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    raise MissingRawBytesError(f"raw bytes missing: pack {account}/{pack} is gone") from None
            data = os.pread(fd, size, offset)
            if len(data) != size:
                raise MissingRawBytesError(f"raw bytes missing: pack {account}/{pack} ends before {offset + size}")
            return data

        try:
            yield read
        finally:
            for fd in files.values():
                os.close(fd)

    def erase(self, account: str, regions: Iterable[tuple[str, int, int]]) -> None:
        """Zero the bytes of removed messages, (pack, offset, size) each, at once: mail
        deleted on the server must not linger in a pack that still holds other mail.
        Appends elsewhere in the same pack are unaffected; a pack already gone is skipped."""
        by_pack: dict[str, list[tuple[int, int]]] = {}
        for pack, offset, size in regions:
            by_pack.setdefault(pack, []).append((offset, size))
        for pack, spans in by_pack.items():
            try:
                fd = os.open(self._path(account, pack), os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                for offset, size in _coalesced(spans):
                    _punch_hole(fd, offset, size)
                os.fdatasync(fd)
            except OSError as error:
                raise PackWriteError(f"cannot erase removed mail in {self._path(account, pack)}: {error}") from None
            finally:
                os.close(fd)

    def packs(self, account: str) -> list[str]:
        return sorted(path.stem for path in (self.directory / account).glob(f"*{_SUFFIX}"))

    def remove_if_unreferenced(self, account: str, pack: str, referenced: Callable[[], bool]) -> bool:
        """Delete a pack no row points at. `referenced` is asked under the pack's lock, so
        a writer cannot be appending (and committing rows) to it meanwhile."""
        path = self._path(account, pack)
        if (fd := _lock_if_current(path)) is None:
            return False
        try:
            if referenced():
                return False
            path.unlink()
            return True
        finally:
            os.close(fd)

    def _path(self, account: str, pack: str) -> Path:
        return self.directory / account / f"{pack}{_SUFFIX}"
