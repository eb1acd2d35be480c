"""CPU-bound per-message work (parsing, cleaning) spread over the machine's cores.

Small partitions run in-process: a worker pool costs ~0.1-0.3 s to start, more than
parsing a few hundred messages. Workers come from a forkserver, not a plain fork, because
a Dagster step process has background threads whose locks a forked child could inherit.
Inside a daemonic process (a run in a Celery prefork worker) multiprocessing refuses to
start children, so the work runs in-process there: the same rows, on one core. A Celery
host gets its parallelism from its worker concurrency instead.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

MIN_ITEMS_FOR_WORKERS = 400


class CoreMap:
    """`map` over all cores for large inputs; created lazily, closed with the context."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def map(self, function: Callable[[In], Out], items: Sequence[In]) -> list[Out]:
        if self.workers < 2 or len(items) < MIN_ITEMS_FOR_WORKERS or multiprocessing.current_process().daemon:
            return [function(item) for item in items]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"))
        chunk = max(16, len(items) // (self.workers * 4))
        return list(self._pool.map(function, items, chunksize=chunk))

    def __enter__(self) -> CoreMap:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
