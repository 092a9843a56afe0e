"""Subject keys made before their rows exist: recorded first, so none is ever lost track of.

A subject key has to exist before the transaction that stores the subject's
ciphertext commits. If the process dies in between (a killed worker, an
ambiguous commit), the key would be an orphan nobody knows of. So the key's
intent is committed first, the key created (for a batch, many at once), and
the intent deleted in the transaction that inserts the subject row: a row
with its key, or an intent naming a key to settle, never neither.

``settle`` (the maintenance tick, and ``pii-vault reconcile``) takes intents
older than the grace period: if the subject row exists the intent is dropped;
if not, the key is destroyed and the intent deleted while the intent's row is
locked. A request still running that long then finds its intent gone when it
commits and rolls back (``claim``), so a key is never destroyed under a
committed row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from keys.errors import KeyProviderError
from keys.provider import SubjectKeys
from vault.errors import KeyProviderUnavailable, ServiceUnavailable
from vault.models import KeyIntent, Subject, utcnow
from vault.transactions import Transactions, translating

log = logging.getLogger(__name__)

PARALLEL = 8  # concurrent key creations for one batch (Vault handles these independently)


class IntentLost(ServiceUnavailable):
    """The request outlived the grace period and its keys were settled: nothing stored."""


class KeyIntents:
    def __init__(self, tx: Transactions, keys: SubjectKeys) -> None:
        self.tx = tx
        self.keys = keys

    def record(self, subject_ids: Sequence[str]) -> None:
        """Commit the intents of keys about to be made (before any of them is made)."""
        if not subject_ids:
            return
        now = utcnow()
        with self.tx.begin() as session:
            session.add_all(KeyIntent(subject_id=s, created_at=now) for s in subject_ids)

    def create_key(self, subject_id: str) -> None:
        """Record the intent, then create the key. On failure the key is destroyed again
        (best effort) and the error raised; an intent left behind is settled."""
        self.record([subject_id])
        try:
            with translating():
                self.keys.create_subject_key(subject_id)
        except BaseException:
            self.discard([subject_id])
            raise

    @staticmethod
    def claim(session: Session, subject_ids: Sequence[str]) -> None:
        """In the transaction that stores the subjects: their intents go with the insert.

        If any intent is gone, the sweep took it (this request ran past the grace
        period) and may have destroyed the key: raise, so nothing commits."""
        if not subject_ids:
            return
        result = session.execute(delete(KeyIntent).where(KeyIntent.subject_id.in_(subject_ids)))
        if result.rowcount != len(set(subject_ids)):  # type: ignore[attr-defined]
            raise IntentLost("the request took too long and was abandoned; retry it")

    def discard(self, subject_ids: Sequence[str]) -> None:
        """Keys known not to be needed (their write is known not stored): destroy, then
        drop the intents. Best effort: what fails here is settled later."""
        destroyed = []
        for subject_id in subject_ids:
            try:
                self.keys.destroy_subject_key(subject_id)
                destroyed.append(subject_id)
            except KeyProviderError:
                continue
        if destroyed:
            try:
                with self.tx.begin() as session:
                    session.execute(delete(KeyIntent).where(KeyIntent.subject_id.in_(destroyed)))
            except ServiceUnavailable:
                pass

    def pending(self, older_than: float) -> list[str]:
        cutoff = utcnow() - dt.timedelta(seconds=older_than)
        with self.tx.begin(read_only=True) as session:
            return list(
                session.scalars(
                    select(KeyIntent.subject_id)
                    .where(KeyIntent.created_at < cutoff)
                    .order_by(KeyIntent.created_at)
                )
            )

    def sweep(self, older_than: float) -> None:
        """The maintenance task: settle what is due."""
        self.settle(older_than)

    def settle(
        self, older_than: float, *, dry_run: bool = False, limit: int | None = 200
    ) -> list[str]:
        """Settle intents older than ``older_than`` seconds; returns the keys destroyed."""
        destroyed: list[str] = []
        for subject_id in self.pending(older_than)[:limit]:  # a tick does a bounded share
            try:
                with self.tx.begin() as session:
                    intent = session.execute(
                        select(KeyIntent)
                        .where(KeyIntent.subject_id == subject_id)
                        .with_for_update()
                    ).scalar_one_or_none()
                    if intent is None:
                        continue  # its request committed (or another sweep took it) meanwhile
                    if session.get(Subject, subject_id) is None:
                        if not dry_run:
                            # Under the intent's lock: the request cannot commit meanwhile.
                            self.keys.destroy_subject_key(subject_id)
                        destroyed.append(subject_id)
                    if not dry_run:
                        session.delete(intent)
            except KeyProviderUnavailable:
                log.warning("orphan subject key not settled (key provider unavailable); retried")
                break
        if destroyed and not dry_run:
            log.info("destroyed %d orphan subject key(s) left by unfinished writes", len(destroyed))
        return destroyed
