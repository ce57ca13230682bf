"""Ending an attempt that runs too long, without letting it publish afterwards.

Python cannot kill a thread, so an attempt with a deadline runs in a daemon worker thread and
the caller stops waiting for it at the deadline. What makes that safe is a *fence* on the
attempt's `Lakehouse`: every catalog commit of `lakehouse` happens while holding the table lock
(`TableLocks.hold`), and the fenced locks refuse to hand out a lock once the attempt has been
given up. A re-apply holds the table lock across several commits (`TableLocks.hold_across`);
there the fence guards each commit inside, so closing it waits for a commit, not an audit.
So after `run_with_timeout` raised `AttemptTimeoutError`, the abandoned attempt cannot create
its branch nor move `main`, whatever it is doing when it wakes up.

Guarantees:

* The deadline is enforced on the caller's side: the caller regains control after at most
  `timeout_s` (plus the end of a catalog commit that is in progress at the deadline, itself
  bounded by `COMMIT_GRACE_S`).
* After `AttemptTimeoutError` is raised, the attempt makes no further catalog commit.
* If the attempt finished its last commit just before the deadline and returns within
  `FINISH_GRACE_S`, its own result (for instance `published`) is returned instead of a
  timeout, so a published snapshot is never reported as timed out. The data is safe either
  way: only audited snapshots ever reach `main`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import TypeVar

from lakehouse.branches import Lakehouse
from lakehouse.errors import SluiceError
from lakehouse.locks import TableLocks

T = TypeVar("T")

COMMIT_GRACE_S = 60.0
"""How long a deadline waits for a catalog commit that is already under way."""
FINISH_GRACE_S = 1.0
"""How long a deadline waits for an attempt that has committed to return its own result."""


class AttemptTimeoutError(SluiceError):
    """An attempt ran longer than its asset's `timeout_s`."""


class AttemptCancelledError(SluiceError):
    """Raised inside an abandoned attempt when it tries to commit after its deadline."""


class Fence:
    """Lets commits through until `close()`; `close()` waits for a commit under way."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self.commits = 0

    @contextmanager
    def commit(self, identifier: str) -> Iterator[None]:
        with self._lock:
            self.check(identifier)
            yield
            self.commits += 1

    def check(self, identifier: str) -> None:
        """Raise `AttemptCancelledError` once the fence is closed."""
        if self._closed:
            raise AttemptCancelledError(
                "attempt was given up after its timeout; refusing to commit", asset=identifier
            )

    def close(self, wait_s: float = COMMIT_GRACE_S) -> bool:
        """Refuse every later commit; False if a commit was still under way after `wait_s`."""
        acquired = self._lock.acquire(timeout=wait_s)
        self._closed = True
        if acquired:
            self._lock.release()
        return acquired


class FencedLocks(TableLocks):
    """The table locks of an attempt: the real locks, and then the attempt's fence."""

    def __init__(self, inner: TableLocks, fence: Fence) -> None:
        super().__init__(None)
        self._inner = inner
        self._fence = fence

    @contextmanager
    def hold(self, identifier: str) -> Iterator[None]:
        with self._inner.hold(identifier), self._fence.commit(identifier):
            yield

    @contextmanager
    def hold_across(self, identifier: str) -> Iterator[None]:
        """The table lock across a re-apply, without the fence: the fence is held only around
        each commit inside (through `hold`), so closing it never waits for an audit."""
        self._fence.check(identifier)
        with self._inner.hold(identifier):
            self._fence.check(identifier)
            yield


def run_with_timeout(
    attempt: Callable[[Lakehouse], T], lh: Lakehouse, timeout_s: float | None, *, what: str
) -> T:
    """Run `attempt(lh)`, giving up after `timeout_s` seconds (never, if None).

    Without a timeout the attempt runs in the calling thread. With one, it runs in a daemon
    thread on a fenced copy of `lh`; at the deadline the fence is closed and
    `AttemptTimeoutError` names `what` and the limit. Exceptions of the attempt propagate.
    """
    if timeout_s is None:
        return attempt(lh)
    fence = Fence()
    fenced = Lakehouse(lh.catalog, FencedLocks(lh.locks, fence))
    future: Future[T] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(attempt(fenced))
        except BaseException as exc:
            future.set_exception(exc)

    thread = threading.Thread(target=work, name=f"sluice-attempt-{what}", daemon=True)
    thread.start()
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        pass
    finished_commit = fence.close()
    try:
        return future.result(timeout=FINISH_GRACE_S if fence.commits else 0.0)
    except FutureTimeout:
        pass
    note = "" if finished_commit else " (a catalog commit was still under way)"
    raise AttemptTimeoutError(f"{what}: attempt timed out after {timeout_s:g}s{note}")
