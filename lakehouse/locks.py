"""Per-table commit serialization.

Concurrent commits to one table make each other fail (the SQL catalog compares the whole
metadata pointer). Serializing the short commit steps per table, across threads and, through a
lock file, across processes on one host, removes those failures; correctness never depends on
the lock, because every publish is also a compare-and-swap on `main`.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class TableLocks:
    """Hands out one lock per table identifier; `lock_dir=None` locks within this process only."""

    def __init__(self, lock_dir: Path | None = None) -> None:
        self._lock_dir = lock_dir
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        if lock_dir is not None:
            lock_dir.mkdir(parents=True, exist_ok=True)

    def _thread_lock(self, identifier: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(identifier, threading.Lock())

    @contextmanager
    def hold(self, identifier: str) -> Iterator[None]:
        """Hold the lock of `identifier` for the duration of the block."""
        with self._thread_lock(identifier):
            if self._lock_dir is None:
                yield
                return
            path = self._lock_dir / f"{identifier}.lock"
            with path.open("a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
