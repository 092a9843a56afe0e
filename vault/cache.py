"""A bounded cache of unwrapped data keys: LRU + TTL, one load per key at a time.

Why: every decrypt needs its data key, and unwrapping is a Vault round trip.
The cache keeps that to one call per data key per TTL, however many threads
ask at once. ``evict_subject`` (called at the start of a shred, and in every
other process when it reads the shred log) drops the subject's keys and
poisons loads already in flight, so a shredded subject can never be decrypted
from here; ``sweep`` (run periodically) makes the TTL hold for keys nobody
asks for again.

The shred log is the database's word, and a restored backup (or one deleted
row) takes it back (issue 17). So the cache also follows the shreds published
outside the database (``follow_shreds``: the ledger's create-only sequence,
``vault/shred_ledger.py``) at least every ``recheck`` seconds before it answers:
a shred reaches every cache within that bound whatever the database says. Until
issue 21 this was one Vault call per subject per ``recheck`` (its key still
exists?), a sixth of a single read's cost; following the sequence is one call per
process per ``recheck``. A subject seen in the sequence is refused for a TTL, so a
load racing its shred cannot cache its key again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from keys.errors import KeyDestroyed, KeyUnavailable
from vault.errors import ServiceUnavailable


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
        self._follow: Callable[[], list[str]] | None = None
        self._followed_until = 0.0  # the published shreds were followed until (monotonic)
        self._ever_followed = False
        self._follow_lock = threading.Lock()
        self._shredded: dict[str, float] = {}  # subject seen shredded -> refused until
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, float]] = OrderedDict()
        self._flights: dict[tuple[str, str], _Flight] = {}
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def follow_shreds(self, follow: Callable[[], list[str]]) -> None:
        """``follow``: the subjects shredded since it was last asked (published outside the
        database); asked before an answer once the last asking is ``recheck`` seconds old."""
        self._follow = follow
        self._followed_until = 0.0
        self._ever_followed = False

    def _catch_up(self) -> None:
        with self._follow_lock:  # one asker; the others wait for its answer
            if self._follow is None or self._followed_until > self._clock():
                return
            recheck = self.recheck
            try:
                gone = self._follow()
            except (KeyUnavailable, ServiceUnavailable):
                if not self._ever_followed:  # never knew where the sequence stands
                    raise
                # Vault does not answer: warm reads are served (an outage must not fail
                # reads Vault is not needed for) and the sequence asked again within a
                # second. The database's shred log still evicts meanwhile.
                gone, recheck = [], min(recheck, 1.0)
            for subject_id in gone:
                self.evict_subject(subject_id)
            with self._lock:
                until = self._clock() + self.ttl
                for subject_id in gone:
                    self._shredded[subject_id] = until
            self._ever_followed = True
            self._followed_until = self._clock() + recheck

    def get(self, subject_id: str, dek_id: str, loader: Callable[[], bytes]) -> bytes:
        """The data key, from the cache or from ``loader`` (called once per concurrent miss);
        KeyDestroyed for a subject the published shreds name."""
        if self._follow is not None and self._followed_until <= self._clock():
            self._catch_up()
        key = (subject_id, dek_id)
        with self._lock:
            if subject_id in self._shredded:
                raise KeyDestroyed("subject key destroyed (shredded)")
            entry = self._entries.get(key)
            now = self._clock()
            if entry is not None:
                if entry[1] > now:
                    self._entries.move_to_end(key)
                    self.stats.hits += 1
                    return entry[0]
                del self._entries[key]
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
        """Seed a key just generated (so its first use needs no unwrap call). The sequence is
        followed first here too: a process's first follow skips what was announced before
        it, so nothing may be cached before it."""
        if self._follow is not None and self._followed_until <= self._clock():
            self._catch_up()
        with self._lock:
            self._entries[(subject_id, dek_id)] = (value, self._clock() + self.ttl)
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
            for subject in [s for s, until in self._shredded.items() if until <= now]:
                del self._shredded[subject]
            return len(expired)

    def evict_subject(self, subject_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == subject_id]:
                del self._entries[key]
            for key, flight in self._flights.items():
                if key[0] == subject_id:
                    flight.cancelled = True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            for flight in self._flights.values():
                flight.cancelled = True
