"""`pii-vault reconcile`: make the database and the key provider agree, and say what did not.

Faults leave three kinds of disagreement (docs/OPERATIONS in the README):

* **orphan keys** - a subject key with no subject row (a worker killed between creating
  the key and committing, an ambiguous commit that did not happen). Key intents settle
  most of them; a key older than the grace period with neither row nor intent is
  destroyed here. Younger ones may belong to a request in flight and are only counted.
* **damaged subjects** - an active subject whose key is missing. Its data is lost; it is
  marked ``damaged`` (reads answer 500 ``subject_damaged``), logged, and counted by the
  ``pii_vault_damaged_subjects`` gauge. Never passed off as an erasure.
* **stuck shreds** - subjects left ``shredding`` (the key provider was down) are
  completed if their shred was decided (published outside the database,
  ``vault/shred_ledger.py``); a ``shredding`` status with no published decision (set
  with SQL) is reported and its key left alone. Shreds whose "completed" audit event is
  missing are listed for the caller to record.
* **forgotten shreds** - a published shred whose subject the database still holds (a
  restored backup): the shred is applied again, so no restore brings a subject back.

With ``dry_run`` nothing is changed: the report says what would be.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from keys.provider import KeyInventory
from vault.errors import VaultError
from vault.models import (
    STATUS_ACTIVE,
    STATUS_SHREDDED,
    STATUS_SHREDDING,
    KeyIntent,
    Subject,
    mark_damaged,
)
from vault.service import VaultService
from vault.shredding import Shredder
from vault.transactions import translating

log = logging.getLogger(__name__)

CHUNK = 500
# Orphans beyond this share of all keys (and more than a handful) mean something other than
# crashed writes: a transit mount shared with another deployment, or the wrong database.
# Reconcile then destroys nothing and says so.
MAX_ORPHAN_SHARE = 0.05
MIN_ORPHANS_CHECKED = 20


class TooManyOrphans(VaultError):
    """Refuse to destroy keys when so many look orphaned that the setup itself is suspect."""


@dataclass
class ReconcileReport:
    dry_run: bool
    orphan_keys: list[str] = field(default_factory=list)  # destroyed (or would be)
    young_keys: int = 0  # without a row, inside the grace period: maybe in flight
    newly_damaged: list[str] = field(default_factory=list)
    damaged: int = 0  # every damaged subject, after this run
    shreds_completed: list[str] = field(default_factory=list)
    shreds_pending: list[str] = field(default_factory=list)  # shredding, not completable now
    shreds_unaudited: list[str] = field(default_factory=list)
    shreds_reapplied: list[str] = field(default_factory=list)  # published, but live in the rows
    shreds_undecided: list[str] = field(default_factory=list)  # "shredding" without a decision

    @property
    def broken(self) -> bool:
        """Something a human must look at (or, in a dry run, something a run would fix)."""
        fixable = self.dry_run and bool(
            self.orphan_keys
            or self.shreds_completed
            or self.shreds_unaudited
            or self.shreds_reapplied
        )
        return bool(
            self.damaged
            or self.newly_damaged
            or self.shreds_pending
            or self.shreds_undecided
            or fixable
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "orphan_keys": self.orphan_keys,
            "young_keys": self.young_keys,
            "newly_damaged": self.newly_damaged,
            "damaged": self.damaged,
            "shreds_completed": self.shreds_completed,
            "shreds_pending": self.shreds_pending,
            "shreds_unaudited": self.shreds_unaudited,
            "shreds_reapplied": self.shreds_reapplied,
            "shreds_undecided": self.shreds_undecided,
            "broken": self.broken,
        }


class Reconciler:
    def __init__(
        self,
        vault: VaultService,
        shredder: Shredder,
        inventory: KeyInventory,
        *,
        grace: float,
        claim_check: Callable[[], None] | None = None,
    ) -> None:
        """``claim_check``: raises unless the key provider's mounts are this deployment's
        (issue 23: another deployment's keys on a shared mount looked like orphans)."""
        self.claim_check = claim_check
        self.vault = vault
        self.shredder = shredder
        self.inventory = inventory
        self.grace = grace

    def run(self, *, dry_run: bool = False) -> ReconcileReport:
        if self.claim_check is not None:
            self.claim_check()
        report = ReconcileReport(dry_run=dry_run)
        report.orphan_keys.extend(
            self.vault.intents.settle(self.grace, dry_run=dry_run, limit=None)
        )
        with translating():
            listed = set(self.inventory.subject_key_ids())
        candidates = self._orphans(listed, report)
        too_many = len(candidates) > max(MIN_ORPHANS_CHECKED, MAX_ORPHAN_SHARE * len(listed))
        if too_many and not dry_run:
            raise TooManyOrphans(
                f"{len(candidates)} of {len(listed)} subject keys have no row in this database: "
                "is the transit mount shared with another deployment, or is this the wrong "
                "database? Nothing was destroyed (see --dry-run)."
            )
        self._destroy(candidates, report)
        self._reapply(report)  # before "damaged": a restored shred is an erasure, not a loss
        self._damaged(listed, report)
        self._shreds(report)
        report.damaged = self.vault.damaged_count()
        if dry_run:
            report.damaged += len(report.newly_damaged)
        return report

    def _orphans(self, listed: set[str], report: ReconcileReport) -> list[str]:
        """Keys past the grace period with neither a live row nor an intent."""
        candidates: list[str] = []
        ids = sorted(listed)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            with self.vault.tx.begin(read_only=True) as session:
                live = set(
                    session.scalars(
                        select(Subject.id).where(
                            Subject.id.in_(chunk), Subject.status != STATUS_SHREDDED
                        )
                    )
                )
                in_flight = set(
                    session.scalars(
                        select(KeyIntent.subject_id).where(KeyIntent.subject_id.in_(chunk))
                    )
                )
            for subject_id in chunk:
                if subject_id in live or subject_id in in_flight:
                    continue
                with translating():
                    created = self.inventory.subject_key_created(subject_id)
                if created is None:
                    continue  # gone meanwhile
                if time.time() - created < self.grace:
                    report.young_keys += 1
                    continue
                candidates.append(subject_id)
        return candidates

    def _destroy(self, candidates: list[str], report: ReconcileReport) -> None:
        for subject_id in candidates:
            if not report.dry_run:
                with self.vault.tx.begin() as session:  # the row may have appeared since
                    if session.get(Subject, subject_id, with_for_update=True) is not None:
                        continue
                    self.vault.keys.destroy_subject_key(subject_id)
                log.info("reconcile: destroyed orphan subject key %s (no row)", subject_id)
            report.orphan_keys.append(subject_id)

    def _reapply(self, report: ReconcileReport) -> None:
        ledger = self.shredder.ledger
        if ledger is None:
            return
        published = ledger.subject_ids()
        for start in range(0, len(published), CHUNK):
            chunk = published[start : start + CHUNK]
            with self.vault.tx.begin(read_only=True) as session:
                forgotten = list(
                    session.scalars(
                        select(Subject.id).where(
                            Subject.id.in_(chunk),
                            Subject.status.not_in([STATUS_SHREDDED, STATUS_SHREDDING]),
                        )
                    )
                )
            for subject_id in forgotten:  # ("shredding" ones are completed by _shreds)
                if not report.dry_run:
                    self.shredder.reapply(subject_id)
                    log.info("reconcile: applied again the published shred of %s", subject_id)
                report.shreds_reapplied.append(subject_id)

    def _damaged(self, listed: set[str], report: ReconcileReport) -> None:
        with self.vault.tx.begin(read_only=True) as session:
            active = list(
                session.scalars(select(Subject.id).where(Subject.status == STATUS_ACTIVE))
            )
        for subject_id in active:
            if subject_id in listed:
                continue
            with self.vault.tx.begin() as session:  # confirm under the row's lock
                subject = session.get(Subject, subject_id, with_for_update=True)
                if subject is None or subject.status != STATUS_ACTIVE:
                    continue
                if self.vault.keys.subject_key_exists(subject_id):
                    continue  # created after the listing
                if not report.dry_run:
                    mark_damaged(subject)
                report.newly_damaged.append(subject_id)

    def _shreds(self, report: ReconcileReport) -> None:
        if report.dry_run:
            ledger = self.shredder.ledger
            for subject_id in self.shredder.pending():
                decided = ledger is None or ledger.decided(subject_id)
                (report.shreds_completed if decided else report.shreds_undecided).append(subject_id)
        else:
            outcome = self.shredder.complete_pending()
            report.shreds_completed = [r.subject_id for r in outcome.completed]
            report.shreds_pending = outcome.pending
            report.shreds_undecided = outcome.undecided
        report.shreds_unaudited = [
            s for s in self.shredder.unaudited() if s not in report.shreds_completed
        ]
