"""Subject keys made ahead: a batch of new subjects claims keys the pool made meanwhile.

A new subject needs its own transit key and a first data key wrapped under it: two
Vault calls that do not depend on anything in the request. A batch of new subjects
(``tokenize``, ``pii-vault import``) used to make them all, wait, and only then write;
the next batch waited for its keys again while the database was busy with nothing
Vault did. After a batch takes ``n`` keys the pool starts making ``n`` more (at most
``limit`` per region) on its own threads, so the next batch's keys are made while this
one's rows are written.

Nothing here weakens the accounting of keys (``vault/intents``): each pooled key's
intent is committed before the key is made, like any other, and is deleted by the
insert that claims it. A pooled key is handed out only while it is younger than
``max_age`` (half the orphan grace period: the sweep never settles a key a request may
still claim); older ones, and every entry left at ``close``, are destroyed with their
intents, and a process that dies leaves intents the sweep settles. The pooled data
keys' plaintext lives only in this process's memory, as the data-key cache's does.

Keys of one region's pool are made for that region (``new_subject_id(region)``), so a
region-bound shard's subject never takes a key from another region's shard. The
pool's threads are its own, not the request pool's: a hung Vault holds them, never a
request's lane.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from keys.bounded import in_context
from keys.provider import DataKey
from vault.intents import PARALLEL, KeyIntents
from vault.transactions import translating

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pooled:
    subject_id: str
    data_key: DataKey = field(repr=False)
    made_at: float  # monotonic, when its intent was recorded


class KeyPool:
    """Thread-safe. ``limit`` 0: no keys are made ahead (every take makes its own)."""

    def __init__(
        self,
        intents: KeyIntents,
        new_id: Callable[[str], str],
        first_data_key: Callable[[str], DataKey],
        *,
        limit: int = 0,
        max_age: float = 300.0,
    ) -> None:
        self.intents = intents
        self.new_id = new_id
        self.first_data_key = first_data_key
        self.limit = max(0, limit)
        self.max_age = max_age
        self.ahead = True  # a caller that knows no batch follows turns the refill off
        self._lock = threading.Lock()
        self._ready: dict[str, deque[Future[Pooled]]] = {}
        self._threads = ThreadPoolExecutor(PARALLEL, thread_name_prefix="pii-vault-keys")

    # -- taking ------------------------------------------------------------------------

    def take(self, region: str, count: int) -> list[Pooled]:
        """``count`` keys of ``region``: pooled ones first, the rest made now (in parallel).

        Raises (after destroying what this call made) if a key cannot be made: the caller
        stores nothing. Then, if the pool is on, ``count`` more are started for the next.
        """
        if count <= 0:
            return []
        with self._lock:
            queue = self._ready.setdefault(region, deque())
            taken = [queue.popleft() for _ in range(min(count, len(queue)))]
        wait(taken)
        fresh: list[Pooled] = []
        stale: list[Pooled] = []
        for entry in filter(None, map(_entry, taken)):  # failed ones discarded themselves
            (fresh if self._fresh(entry) else stale).append(entry)  # judged once each
        self._discard(stale)
        if len(fresh) < count:
            try:
                fresh += self._make_now(region, count - len(fresh))
            except BaseException:
                self._discard(fresh)
                raise
        if self.limit and self.ahead and count > 1:
            self._refill(region, min(count, self.limit))
        return fresh

    def _fresh(self, entry: Pooled) -> bool:
        return time.monotonic() - entry.made_at < self.max_age

    def _make_now(self, region: str, count: int) -> list[Pooled]:
        ids = [self.new_id(region) for _ in range(count)]
        made_at = time.monotonic()
        self.intents.record(ids)
        if count == 1:  # a single create: no thread hop on the hot path
            futures = [_done(self._make, ids[0], made_at)]
        else:
            make = in_context(self._make)  # part of the request: shares its Vault lane
            futures = [self._threads.submit(make, s, made_at) for s in ids]
        wait(futures)
        made = [e for e in map(_entry, futures) if e is not None]
        failure = next((f.exception() for f in futures if f.exception() is not None), None)
        if failure is not None:
            self._discard(made)
            raise failure
        return made

    def _make(self, subject_id: str, made_at: float) -> Pooled:
        """One subject's key and first data key, back to back (no barrier between the
        batch's keys and its data keys). A failure destroys what it made (best effort: an
        ambiguous create leaves the intent for the sweep)."""
        try:
            with translating():
                self.intents.keys.create_subject_key(subject_id)
                return Pooled(subject_id, self.first_data_key(subject_id), made_at)
        except BaseException:
            self.intents.discard([subject_id])
            raise

    # -- making ahead --------------------------------------------------------------------

    def _refill(self, region: str, target: int) -> None:
        with self._lock:
            queue = self._ready.setdefault(region, deque())
            missing = target - len(queue)
        if missing <= 0:
            return
        try:
            ids = [self.new_id(region) for _ in range(missing)]
            self.intents.record(ids)
        except Exception:  # making ahead is an optimisation: the next take makes its own
            log.warning("subject keys not made ahead (recording their intents failed)")
            return
        made_at = time.monotonic()
        futures = [self._threads.submit(self._make, s, made_at) for s in ids]
        for future in futures:
            future.add_done_callback(_log_failure)
        with self._lock:
            self._ready.setdefault(region, deque()).extend(futures)

    # -- ending --------------------------------------------------------------------------

    def sweep(self) -> None:
        """The maintenance tick: pooled keys past ``max_age`` are destroyed, not kept."""
        with self._lock:
            stale: list[Pooled] = []
            for queue in self._ready.values():
                keep: deque[Future[Pooled]] = deque()
                for future in queue:
                    entry = _entry(future) if future.done() else None
                    if entry is not None and not self._fresh(entry):
                        stale.append(entry)
                    elif not future.done() or entry is not None:
                        keep.append(future)
                queue.clear()
                queue.extend(keep)
        self._discard(stale)

    def close(self) -> None:
        """Every pooled key is destroyed with its intent (best effort; the sweep settles
        the rest)."""
        with self._lock:
            futures = [f for queue in self._ready.values() for f in queue]
            self._ready.clear()
        wait(futures)
        self._discard([e for e in map(_entry, futures) if e is not None])
        self._threads.shutdown(wait=True)

    def _discard(self, entries: Sequence[Pooled]) -> None:
        if entries:
            self.intents.discard([e.subject_id for e in entries])


def _entry(future: Future[Pooled]) -> Pooled | None:
    return None if future.exception() is not None else future.result()


def _done(fn: Callable[[str, float], Pooled], subject_id: str, made_at: float) -> Future[Pooled]:
    future: Future[Pooled] = Future()
    try:
        future.set_result(fn(subject_id, made_at))
    except BaseException as exc:
        future.set_exception(exc)
    return future


def _log_failure(future: Future[Pooled]) -> None:
    if future.exception() is not None:  # the next take makes its own
        log.warning("a subject key was not made ahead: %s", type(future.exception()).__name__)
