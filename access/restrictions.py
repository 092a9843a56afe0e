"""Restriction and objection (privacy policy §5, issue 19): a subject may have processing
of their data restricted, for one purpose or for all, and may object to a purpose (an
objection is recorded as a restriction of that purpose).

While a restriction is in force every action on the subject answers 403 ``restricted``
except keeping the data, what the privacy office does for ``subject_access_request``
and ``legal_compliance``, shreds, consent records and the office's own corrections —
decided with the policy, per subject, like consent (``access/decisions.py``). History
is append-only: the newest record per (subject, scope) is in force; lifting is a record.

Account deactivation (§5: "terminates service access") is a restriction of every
purpose of kind ``deactivated``: service purposes are refused, the privacy office and
legal purposes still served; after a grace period (``PII_VAULT_DEACTIVATION_GRACE_DAYS``,
30) ``pii-vault shred-deactivated`` shreds the subject unless it was reactivated (a
``lifted`` record) first.

Rows are tagged under the grant key (``access/sealed.py``): the newest row failing its tag
counts as a restriction (a forged ``lifted`` lifts nothing), and only a valid deactivation
ever leads to a shred.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from access.errors import InvalidRequest
from access.models import Restriction
from access.purposes import Purposes
from access.sealed import RowSeal, moment
from vault.models import aware, iso
from vault.transactions import Transactions

ALL = "*"
Kind = Literal["restriction", "objection", "deactivated", "lifted"]
KINDS = ("restriction", "objection", "deactivated", "lifted")
EXEMPT_PURPOSES = frozenset({"subject_access_request", "legal_compliance"})
EXEMPT_ACTIONS = frozenset({"shred", "consent_write", "attributes", "restrict"})


def applies(action: str, purpose: str | None) -> bool:
    """Whether a restriction can refuse this action for this purpose."""
    return purpose is not None and purpose not in EXEMPT_PURPOSES and action not in EXEMPT_ACTIONS


# The newest record per (subject, scope) for a read's subjects: on every decision, so
# built once (issue 21).
_RESTRICTED_FOR = select(Restriction).where(
    Restriction.id.in_(
        select(func.max(Restriction.id))
        .where(
            Restriction.subject_id.in_(bindparam("r_ids", expanding=True)),
            Restriction.scope.in_(bindparam("r_scopes", expanding=True)),
        )
        .group_by(Restriction.subject_id, Restriction.scope)
    )
)


class Restrictions:
    def __init__(self, tx: Transactions, purposes: Purposes, seal: RowSeal | None = None) -> None:
        self.tx = tx
        self.purposes = purposes
        self.seal = seal

    def _valid(self, row: Restriction) -> bool:
        return self.seal is None or self.seal.valid(_material(row), row.tag)

    def seal_untagged(self) -> int:
        """Tag the rows written before tags existed (once, at the upgrade)."""
        if self.seal is None:
            return 0
        with self.tx.begin() as session:
            rows = session.scalars(select(Restriction).where(Restriction.tag.is_(None))).all()
            for row in rows:
                row.tag = self.seal.tag(_material(row))
            return len(rows)

    def record(self, subject_id: str, scope: str, kind: str) -> dict[str, Any]:
        if kind not in KINDS:
            raise InvalidRequest("kind must be restriction, objection, deactivated or lifted")
        if scope != ALL:
            self.purposes.get(scope)  # an unknown purpose is an error, not a no-op
        if kind == "objection" and scope == ALL:
            raise InvalidRequest("an objection names the purpose objected to")
        if kind == "deactivated" and scope != ALL:
            raise InvalidRequest("a deactivation covers every purpose")
        row = Restriction(
            subject_id=subject_id, scope=scope, kind=kind, recorded_at=dt.datetime.now(dt.UTC)
        )
        with self.tx.begin() as session:
            session.add(row)
            if self.seal is not None:
                session.flush()  # the id is part of the tag
                row.tag = self.seal.tag(_material(row))
        return _as_dict(row)

    def restricted_for(
        self, subject_ids: Sequence[str], purpose: str, session: Session | None = None
    ) -> set[str]:
        """The ids among ``subject_ids`` restricted for ``purpose`` (or for all), one query."""
        ids = sorted(set(subject_ids))
        if not ids:
            return set()
        with self.tx.reading(session) as read:
            rows = read.scalars(_RESTRICTED_FOR, {"r_ids": ids, "r_scopes": [ALL, purpose]}).all()
        return {r.subject_id for r in rows if r.kind != "lifted" or not self._valid(r)}

    def deactivated_before(self, cutoff: dt.datetime) -> list[str]:
        """Subjects whose newest record for every purpose is a deactivation older than
        ``cutoff``: due for their shred."""
        latest_id = (
            select(func.max(Restriction.id))
            .where(Restriction.scope == ALL)
            .group_by(Restriction.subject_id)
        )
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(select(Restriction).where(Restriction.id.in_(latest_id))).all()
        return sorted(
            r.subject_id
            for r in rows
            if r.kind == "deactivated" and aware(r.recorded_at) < cutoff and self._valid(r)
        )

    def of(self, subject_id: str) -> list[dict[str, Any]]:
        with self.tx.begin(read_only=True) as session:
            return [
                _as_dict(r)
                for r in session.scalars(
                    select(Restriction)
                    .where(Restriction.subject_id == subject_id)
                    .order_by(Restriction.id)
                )
            ]

    def delete_for(self, subject_id: str) -> None:
        """With the shred: restrictions go with the data."""
        with self.tx.begin() as session:
            session.execute(delete(Restriction).where(Restriction.subject_id == subject_id))


def _material(r: Restriction) -> list[Any]:
    return [r.id, r.subject_id, r.scope, r.kind, moment(r.recorded_at)]


def _as_dict(r: Restriction) -> dict[str, Any]:
    return {
        "scope": r.scope,
        "kind": r.kind,
        "recorded_at": iso(r.recorded_at),
    }
