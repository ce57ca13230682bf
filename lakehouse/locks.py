"""Per-table commit serialization.

Concurrent commits to one table make each other fail (the SQL catalog compares the whole
metadata pointer). Serializing the short commit steps per table, across threads and, through a
lock file, across processes on one host, removes those failures; correctness never depends on
the lock, because every publish is also a compare-and-swap on `main`.

The lock is re-entrant per thread: a writer that lost a race holds it across its whole re-apply
(`hold_across`: write, audit, publish), and each commit inside takes it again (`hold`). The lock
file is locked on a thread's first entry and unlocked on its last exit.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


class TableLocks:
    """Hands out one lock per table identifier; `lock_dir=None` locks within this process only."""

    def __init__(self, lock_dir: Path | None = None) -> None:
        self._lock_dir = lock_dir
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        # Only the thread holding an identifier's RLock reads or changes its entries here.
        self._depth: dict[str, int] = {}
        self._files: dict[str, IO[str]] = {}
        if lock_dir is not None:
            lock_dir.mkdir(parents=True, exist_ok=True)

    def _thread_lock(self, identifier: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(identifier, threading.RLock())

    @contextmanager
    def hold(self, identifier: str) -> Iterator[None]:
        """Hold the lock of `identifier` for the duration of the block (one or more commits).

        Re-entrant within a thread; other threads and, with a `lock_dir`, other processes of
        this host wait until the holder's outermost block ends.
        """
        with self._thread_lock(identifier):
            depth = self._depth.get(identifier, 0)
            if depth == 0 and self._lock_dir is not None:
                handle = (self._lock_dir / f"{identifier}.lock").open("a+")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                except BaseException:
                    handle.close()
                    raise
                self._files[identifier] = handle
            self._depth[identifier] = depth + 1
            try:
                yield
            finally:
                if depth:
                    self._depth[identifier] = depth
                else:
                    del self._depth[identifier]
                    held = self._files.pop(identifier, None)
                    if held is not None:
                        try:
                            fcntl.flock(held, fcntl.LOCK_UN)
                        finally:
                            held.close()

    @contextmanager
    def hold_across(self, identifier: str) -> Iterator[None]:
        """Hold the lock of `identifier` across several commits and the work between them (a
        re-apply: write, audit, publish), so that no other writer of this host commits to the
        table meanwhile. Each commit inside still enters `hold`."""
        with self.hold(identifier):
            yield
