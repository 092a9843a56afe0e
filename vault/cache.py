"""A bounded cache of unwrapped data keys: LRU + TTL, one load per key at a time.

Why: every decrypt needs its data key, and unwrapping is a Vault round trip.
The cache keeps that to one call per data key per TTL, however many threads
ask at once. ``evict_subject`` (called at the start of a shred, and in every
other process when it reads the shred log) drops the subject's keys and
poisons loads already in flight, so a shredded subject can never be decrypted
from here; ``sweep`` (run periodically) makes the TTL hold for keys nobody
asks for again.

The shred log is the database's word, and a restored backup (or one deleted
row) takes it back (issue 17). So a hit also asks, at most every ``recheck``
seconds per subject, whether the subject's key still exists in Vault
(``confirm``): a shred reaches every cache within that bound whatever the
database says. An unwrap or a fresh key proves the key exists for as long.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from keys.errors import KeyDestroyed, KeyUnavailable


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    loads: int = 0
    evictions: int = 0


class _Flight:
    __slots__ = ("cancelled", "done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: bytes | None = None
        self.error: BaseException | None = None
        self.cancelled = False


class DataKeyCache:
    def __init__(
        self,
        max_entries: int = 1024,
        ttl_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        recheck_seconds: float = 10.0,
    ) -> None:
        if max_entries < 1 or ttl_seconds <= 0 or recheck_seconds <= 0:
            raise ValueError("cache needs max_entries >= 1, ttl_seconds > 0, recheck_seconds > 0")
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self.recheck = recheck_seconds
        self._confirmed: dict[str, float] = {}  # subject -> its key was seen to exist until
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, float]] = OrderedDict()
        self._flights: dict[tuple[str, str], _Flight] = {}
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self,
        subject_id: str,
        dek_id: str,
        loader: Callable[[], bytes],
        confirm: Callable[[], bool] | None = None,
    ) -> bytes:
        """The data key, from the cache or from ``loader`` (called once per concurrent miss).
        ``confirm``: whether the subject's key still exists, asked on a hit once the last
        confirmation is ``recheck`` seconds old; False drops the subject (KeyDestroyed)."""
        key = (subject_id, dek_id)
        with self._lock:
            entry = self._entries.get(key)
            now = self._clock()
            if entry is not None:
                if entry[1] > now:
                    fresh = confirm is None or self._confirmed.get(subject_id, 0.0) > now
                    if fresh:
                        self._entries.move_to_end(key)
                        self.stats.hits += 1
                        return entry[0]
                else:
                    del self._entries[key]
                    entry = None
        if entry is not None and confirm is not None:  # a hit due for its re-check
            recheck = self.recheck
            try:
                exists = confirm()
            except KeyUnavailable:
                # Vault does not answer: the warm read is served (an outage must not fail
                # reads Vault is not needed for) and the check retried within a second.
                # The database's shred log still evicts meanwhile; see ARCHITECTURE.md.
                exists, recheck = True, min(recheck, 1.0)
            if not exists:
                self.evict_subject(subject_id)
                raise KeyDestroyed("subject key destroyed (shredded)")
            with self._lock:
                self._confirmed[subject_id] = self._clock() + recheck
                self.stats.hits += 1
            return entry[0]
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
                self.stats.misses += 1
                self.stats.loads += 1
            else:
                self.stats.hits += 1
        if not leader:
            flight.done.wait()
        else:
            try:
                flight.value = loader()
            except BaseException as exc:
                flight.error = exc
            finally:
                with self._lock:
                    self._flights.pop(key, None)
                    if flight.error is None and not flight.cancelled and flight.value is not None:
                        self._entries[key] = (flight.value, self._clock() + self.ttl)
                        self._confirmed[subject_id] = self._clock() + self.recheck
                        while len(self._entries) > self.max_entries:
                            self._entries.popitem(last=False)
                            self.stats.evictions += 1
                flight.done.set()
        if flight.error is not None:
            raise flight.error
        if flight.cancelled or flight.value is None:
            raise KeyDestroyed("subject is being shredded")
        return flight.value

    def put(self, subject_id: str, dek_id: str, value: bytes) -> None:
        """Seed a key just generated (so its first use needs no unwrap call)."""
        with self._lock:
            self._entries[(subject_id, dek_id)] = (value, self._clock() + self.ttl)
            self._confirmed[subject_id] = self._clock() + self.recheck
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.stats.evictions += 1

    def holds(self, subject_id: str) -> bool:
        """Whether any data key of the subject is cached (expired or not)."""
        with self._lock:
            return any(k[0] == subject_id for k in self._entries)

    def sweep(self) -> int:
        """Drop expired entries now, so a TTL holds even for keys never asked for again."""
        now = self._clock()
        with self._lock:
            expired = [k for k, (_, until) in self._entries.items() if until <= now]
            for key in expired:
                del self._entries[key]
            held = {k[0] for k in self._entries}
            for subject in [s for s in self._confirmed if s not in held]:
                del self._confirmed[subject]
            return len(expired)

    def evict_subject(self, subject_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == subject_id]:
                del self._entries[key]
            self._confirmed.pop(subject_id, None)
            for key, flight in self._flights.items():
                if key[0] == subject_id:
                    flight.cancelled = True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._confirmed.clear()
            for flight in self._flights.values():
                flight.cancelled = True
