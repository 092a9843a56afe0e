"""The data-key cache: bounded, expiring, single-flight, and never serving a shredded subject."""

from __future__ import annotations

import threading
import time

import pytest

from keys.errors import KeyDestroyed
from vault.cache import DataKeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_hits_after_first_load_and_ttl_expiry() -> None:
    clock = Clock()
    cache = DataKeyCache(max_entries=10, ttl_seconds=60, clock=clock)
    loads = []
    loader = lambda: loads.append(1) or b"k" * 32  # noqa: E731
    for _ in range(5):
        assert cache.get("s", "d", loader) == b"k" * 32
    assert len(loads) == 1 and cache.stats.hits == 4 and cache.stats.misses == 1
    clock.now = 61
    cache.get("s", "d", loader)
    assert len(loads) == 2


def test_lru_bound() -> None:
    cache = DataKeyCache(max_entries=3, ttl_seconds=60)
    for i in range(5):
        cache.get(f"s{i}", "d", lambda: b"k")
    assert len(cache) == 3
    assert cache.stats.evictions == 2
    loads = []
    cache.get("s0", "d", lambda: loads.append(1) or b"k")  # evicted: loads again
    assert loads == [1]


def test_single_flight_under_concurrency() -> None:
    cache = DataKeyCache()
    calls = []
    gate = threading.Event()

    def slow_loader() -> bytes:
        calls.append(1)
        gate.wait(5)
        return b"k" * 32

    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("s", "d", slow_loader)))
        for _ in range(16)
    ]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join()
    assert calls == [1]
    assert results == [b"k" * 32] * 16


def test_errors_are_not_cached() -> None:
    cache = DataKeyCache()

    def failing() -> bytes:
        raise RuntimeError("vault down")

    with pytest.raises(RuntimeError):
        cache.get("s", "d", failing)
    assert cache.get("s", "d", lambda: b"k") == b"k"


def test_evict_subject_drops_entries_and_poisons_flights() -> None:
    cache = DataKeyCache()
    cache.get("s", "d1", lambda: b"k1")
    cache.get("other", "d", lambda: b"k2")
    started, release = threading.Event(), threading.Event()

    def loader() -> bytes:
        started.set()
        release.wait(5)
        return b"k3"

    errors: list[BaseException] = []

    def reader() -> None:
        try:
            cache.get("s", "d2", loader)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    started.wait(5)
    cache.evict_subject("s")
    release.set()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], KeyDestroyed)
    loads = []
    cache.get("s", "d1", lambda: loads.append(1) or b"k1")
    assert loads == [1]  # the old entry is gone
    assert cache.get("other", "d", lambda: b"x") == b"k2"


def test_published_shreds_are_asked_once_per_interval_not_per_subject() -> None:
    """Issue 21: a hit asks the shred sequence at most once per ``recheck`` for the whole
    process (it asked Vault once per subject); a subject the sequence names is dropped and
    refused, its key not loaded again."""
    now = [0.0]
    cache = DataKeyCache(ttl_seconds=300, recheck_seconds=10, clock=lambda: now[0])
    asked: list[int] = []
    announced: list[str] = []

    def follow() -> list[str]:
        asked.append(1)
        out = list(announced)
        announced.clear()
        return out

    cache.follow_shreds(follow)
    for i in range(100):
        cache.get(f"s{i}", "d", lambda: b"k")
    assert len(asked) == 1
    now[0] = 9.0
    for i in range(100):
        cache.get(f"s{i}", "d", lambda: pytest.fail("a hit must not load"))
    assert len(asked) == 1
    announced.append("s7")
    now[0] = 10.5
    assert cache.get("s1", "d", lambda: b"x") == b"k"
    assert len(asked) == 2
    for _ in range(2):
        with pytest.raises(KeyDestroyed):
            cache.get("s7", "d", lambda: b"k")
    assert not cache.holds("s7")
