"""Shreds published outside the database (issue 17): what makes a shred final.

A shred used to live only in the database (``subjects.status``, ``shred_log``), so
a restored backup, or one deleted ``shred_log`` row, brought a subject back in a
worker whose cache still held its data key; and a ``shredding`` status written with
SQL made the operators' own ``shred --pending`` destroy a live subject's key. Now a
shred is decided by a create-only record in the anchor store (Vault KV; the service
may create, never delete), written before anything else happens:

- only a published shred destroys a key (``shred --pending``, ``reconcile``);
- ``reconcile`` re-applies every published shred a restored database has forgotten;
- every worker re-checks, at least every ``recheck`` seconds, that a cached data key's
  subject key still exists (``vault/cache.py``), so a shred reaches every cache
  within that bound whatever the database says.
"""

from __future__ import annotations

from collections.abc import Callable

from keys.provider import PublishedRecords
from vault.models import iso, utcnow
from vault.transactions import translating

_KIND = "shreds"


class ShredLedger:
    def __init__(self, records: PublishedRecords, log: Callable[[], str]) -> None:
        """``log``: the audit log's id (the namespace records go under), asked lazily."""
        self.records = records
        self._log = log

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
