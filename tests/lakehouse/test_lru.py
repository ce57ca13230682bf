"""The per-process LRU map behind the lakehouse's caches."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from lakehouse.lru import LruCache


def test_the_least_recently_used_go_first_past_the_budget() -> None:
    evicted: list[str] = []
    cache: LruCache[str] = LruCache(2, on_evict=evicted.append)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # now "b" is the least recently used
    cache.put("c", "C")
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == ("A", "C")
    assert evicted == ["B"]


def test_entries_weigh_what_they_are_told_and_the_newest_always_stays() -> None:
    cache: LruCache[list[int]] = LruCache(5, weight=len)
    cache.put("small", [1, 2])
    cache.put("medium", [1, 2, 3])
    assert cache.get("small") == [1, 2]  # 5 of 5
    cache.put("heavy", list(range(9)))  # heavier than the budget alone
    assert cache.get("small") is None and cache.get("medium") is None
    assert cache.get("heavy") == list(range(9))


def test_replacing_a_key_counts_its_weight_once_and_releases_the_old_value() -> None:
    evicted: list[list[int]] = []
    cache: LruCache[list[int]] = LruCache(4, weight=len, on_evict=evicted.append)
    cache.put("k", [1, 2, 3])
    cache.put("k", [4])
    cache.put("other", [5, 6, 7])  # 1 + 3 = 4: nothing more goes
    assert cache.get("k") == [4] and cache.get("other") == [5, 6, 7]
    assert evicted == [[1, 2, 3]]
    cache.discard("k")
    assert cache.get("k") is None and evicted == [[1, 2, 3]]
    cache.put("one", [8])  # 3 + 1: fits, as "k" no longer counts
    assert cache.get("other") == [5, 6, 7] and cache.get("one") == [8]
    cache.clear()
    assert cache.get("other") is None


def _in_a_forked_child(probe: Callable[[], bool]) -> bool:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once
        os.write(write, b"1" if probe() else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    return answer == b"1"


def test_a_forked_child_starts_a_process_local_cache_empty() -> None:
    handles: LruCache[str] = LruCache(4, process_local=True)
    facts: LruCache[str] = LruCache(4)
    handles.put("catalog", "parent's connection")
    facts.put("snapshot", "its files")

    assert _in_a_forked_child(lambda: handles.get("catalog") is None)
    assert _in_a_forked_child(lambda: facts.get("snapshot") == "its files")
    assert handles.get("catalog") == "parent's connection"  # the parent keeps its own


def test_get_or_make_makes_a_missing_value_once_and_keeps_nothing_when_making_fails() -> None:
    cache: LruCache[str] = LruCache(4)
    made: list[str] = []

    def make(value: str) -> str:
        made.append(value)
        return value

    assert cache.get_or_make("k", lambda: make("first")) == "first"
    assert cache.get_or_make("k", lambda: make("second")) == "first"
    assert made == ["first"]

    def fail() -> str:
        raise ValueError("cannot make it")

    with pytest.raises(ValueError, match="cannot make it"):
        cache.get_or_make("other", fail)
    assert cache.get("other") is None
