"""Shreds published outside the database (issue 17): what makes a shred final.

A shred used to live only in the database (``subjects.status``, ``shred_log``), so
a restored backup, or one deleted ``shred_log`` row, brought a subject back in a
worker whose cache still held its data key; and a ``shredding`` status written with
SQL made the operators' own ``shred --pending`` destroy a live subject's key. Now a
shred is decided by a create-only record in the anchor store (Vault KV; the service
may create, never delete), written before anything else happens:

- only a published shred destroys a key (``shred --pending``, ``reconcile``);
- ``reconcile`` re-applies every published shred a restored database has forgotten;
- before a key is destroyed the shred is also appended to a create-only *sequence*
  (``shred-seq/<n>``, first free slot), which every worker follows at least every
  ``recheck`` seconds (``vault/cache.py``), so a shred reaches every cache within that
  bound whatever the database says: one Vault read per process per interval (issue 21;
  it was one ``read_key`` per cached subject). The sequence is followed contiguously
  from where the process first found its end, so a slot written far ahead (by the
  holder of the service token, who can only create) is never reached and hides
  nothing written at the first free slot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from keys.provider import PublishedRecords
from vault.models import iso, utcnow
from vault.transactions import translating

_KIND = "shreds"
_SEQUENCE = "shred-seq"


def _slot(n: int) -> str:
    return f"{n:020d}"


def _first_free(names: list[str]) -> int:
    taken = {int(n) for n in names if n.isdigit()}
    n = 1
    while n in taken:
        n += 1
    return n


class ShredLedger:
    def __init__(self, records: PublishedRecords, log: Callable[[], str]) -> None:
        """``log``: the audit log's id (the namespace records go under), asked lazily."""
        self.records = records
        self._log = log
        self._lock = threading.Lock()
        self._next: int | None = None  # the next slot this process reads
        self._write = 1  # no free slot lies below this one (a hint)

    def publish(self, subject_id: str) -> None:
        """The decision, outside the database; idempotent (a retry finds it published)."""
        record = {"v": 1, "subject_id": subject_id, "decided_at": iso(utcnow())}
        with translating():
            self.records.publish(self._log(), _KIND, subject_id, record)

    def decided(self, subject_id: str) -> bool:
        with translating():
            return self.records.published(self._log(), _KIND, subject_id) is not None

    def subject_ids(self) -> list[str]:
        with translating():
            return self.records.published_names(self._log(), _KIND)

    def _start(self) -> int:
        """Where this process starts reading: the first free slot, from one listing."""
        with self._lock:
            if self._next is not None:
                return self._next
        start = _first_free(self.records.published_names(self._log(), _SEQUENCE))
        with self._lock:
            if self._next is None:
                self._next = start
            self._write = max(self._write, start)
            return self._next

    def announce(self, subject_id: str) -> None:
        """Append the shred to the sequence every worker follows (before the key goes; a
        retry appends again, which evicts nothing more)."""
        record = {"v": 1, "subject_id": subject_id, "at": iso(utcnow())}
        with translating():
            self._start()
            with self._lock:
                n = self._write
            while not self.records.publish(self._log(), _SEQUENCE, _slot(n), record):
                n += 1
        with self._lock:
            self._write = max(self._write, n + 1)

    def follow(self) -> list[str]:
        """The subjects announced since the last call (the first call finds the end of the
        sequence and returns nothing: this process cached nothing before it)."""
        with translating():
            if self._next is None:
                self._start()
                return []
            gone: list[str] = []
            n = self._next
            while (record := self.records.published(self._log(), _SEQUENCE, _slot(n))) is not None:
                gone.append(str(record.get("subject_id", "")))
                n += 1
        with self._lock:
            self._next = n
            self._write = max(self._write, n)
        return gone
