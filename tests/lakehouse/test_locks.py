"""The per-table lock: re-entrant within a thread, exclusive across threads and (through its
lock file) across processes, released only when the outermost hold ends."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import pytest

from lakehouse.locks import TableLocks


def _file_is_locked(lock_dir: Path, identifier: str) -> bool:
    """Whether someone holds the lock file (a separate open file, as another process has)."""
    with (lock_dir / f"{identifier}.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _acquired_by_other_thread(locks: TableLocks, identifier: str, wait_s: float) -> bool:
    """Whether another thread gets the lock within `wait_s` (it then releases it at once)."""
    got = threading.Event()

    def other() -> None:
        with locks.hold(identifier):
            got.set()

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    acquired = got.wait(wait_s)
    if not acquired:
        return False
    thread.join(10)
    return True


def test_nested_holds_in_one_thread_do_not_deadlock_and_release_on_the_last_exit(
    tmp_path: Path,
) -> None:
    locks = TableLocks(tmp_path)
    with locks.hold_across("s.t"):
        assert _file_is_locked(tmp_path, "s.t")
        with locks.hold("s.t"), locks.hold("s.t"):
            assert _file_is_locked(tmp_path, "s.t")
        # Leaving the inner holds keeps the lock: still ours, for threads and processes.
        assert _file_is_locked(tmp_path, "s.t")
        assert not _acquired_by_other_thread(locks, "s.t", wait_s=0.2)
        assert not _file_is_locked(tmp_path, "s.other")  # other tables are independent
    assert not _file_is_locked(tmp_path, "s.t")
    assert _acquired_by_other_thread(locks, "s.t", wait_s=10)


def test_an_exception_inside_nested_holds_releases_everything(tmp_path: Path) -> None:
    locks = TableLocks(tmp_path)
    with pytest.raises(RuntimeError), locks.hold("s.t"), locks.hold("s.t"):
        raise RuntimeError("boom")
    assert not _file_is_locked(tmp_path, "s.t")
    assert _acquired_by_other_thread(locks, "s.t", wait_s=10)
    with locks.hold("s.t"):  # and this thread can take it again
        assert _file_is_locked(tmp_path, "s.t")


def test_in_process_locks_are_reentrant_too() -> None:
    locks = TableLocks(None)
    with locks.hold("s.t"), locks.hold_across("s.t"), locks.hold("s.t"):
        assert not _acquired_by_other_thread(locks, "s.t", wait_s=0.2)
    assert _acquired_by_other_thread(locks, "s.t", wait_s=10)
