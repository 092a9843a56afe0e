"""Legal hold (privacy policy §4; issue 20): the privacy office places a hold on a subject
under a reference (a litigation, an authority's preservation order) and later lifts it.
While held, the subject is not shredded (409 ``legal_hold``, every path: the API, the
console, ``shred-deactivated``) and none of its values is purged at the end of its
retention. Append-only: the newest record per subject is in force.

Rows are tagged under the grant key; the cautious reading of a row failing its tag is
"held" (a lift forged with SQL lifts nothing; a hold forged with SQL only keeps data
longer, which the privacy office sees in the history). Deleting the newest row is not
shown by tags (see ARCHITECTURE's threat model): every shred is audited all the same.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, func, select

from access.errors import InvalidRequest
from access.models import LegalHoldRecord
from access.sealed import RowSeal, moment
from vault.transactions import Transactions

HOLD, LIFTED = "hold", "lifted"


def _material(row: LegalHoldRecord) -> list[Any]:
    return [row.id, row.subject_id, row.kind, row.reference, row.actor, moment(row.recorded_at)]


class LegalHolds:
    def __init__(self, tx: Transactions, seal: RowSeal) -> None:
        self.tx = tx
        self.seal = seal

    def _in_force(self, row: LegalHoldRecord) -> bool:
        return row.kind != LIFTED or not self.seal.valid(_material(row), row.tag)

    def record(self, subject_id: str, *, held: bool, reference: str, actor: str) -> dict[str, Any]:
        reference = reference.strip()
        if not reference or len(reference) > 128:
            raise InvalidRequest("a legal hold names its reference (1..128 characters)")
        if not held and not self.held(subject_id):
            raise InvalidRequest("no legal hold is in force for this subject")
        row = LegalHoldRecord(
            subject_id=subject_id,
            kind=HOLD if held else LIFTED,
            reference=reference,
            actor=actor,
            recorded_at=dt.datetime.now(dt.UTC),
        )
        with self.tx.begin() as session:
            session.add(row)
            session.flush()  # the id is part of the tag
            row.tag = self.seal.tag(_material(row))
        return _as_dict(row)

    def held(self, subject_id: str) -> bool:
        return subject_id in self.held_subjects([subject_id])

    def held_subjects(self, subject_ids: list[str] | None = None) -> set[str]:
        """Subjects under a hold now (of ``subject_ids``, or all)."""
        latest = select(func.max(LegalHoldRecord.id)).group_by(LegalHoldRecord.subject_id)
        if subject_ids is not None:
            latest = latest.where(LegalHoldRecord.subject_id.in_(sorted(set(subject_ids))))
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(
                select(LegalHoldRecord).where(LegalHoldRecord.id.in_(latest))
            ).all()
        return {r.subject_id for r in rows if self._in_force(r)}

    def of(self, subject_id: str) -> list[dict[str, Any]]:
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(
                select(LegalHoldRecord)
                .where(LegalHoldRecord.subject_id == subject_id)
                .order_by(LegalHoldRecord.id)
            ).all()
            return [_as_dict(r) for r in rows]

    def delete_for(self, subject_id: str) -> None:
        """With a shred (possible only once no hold is in force): the history goes too;
        the audit log keeps every placing and lifting."""
        with self.tx.begin() as session:
            session.execute(delete(LegalHoldRecord).where(LegalHoldRecord.subject_id == subject_id))


def _as_dict(row: LegalHoldRecord) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "reference": row.reference,
        "actor": row.actor,
        "recorded_at": moment(row.recorded_at),
    }
