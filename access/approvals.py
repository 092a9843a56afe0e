"""Four-eyes approval of reveals (issue 20): where configured (``PII_VAULT_FOUR_EYES``,
per field category or field and purpose; by default identity documents and financial
accounts revealed for ``customer_support``), a reveal first creates a pending request; a
second person with the ``approver`` role, never the requester, approves or rejects it;
an approved request can be used once, by the requester, with the same ticket, within
``PII_VAULT_APPROVAL_WINDOW_MINUTES`` (15) of its approval. A request nobody decides
expires after ``PII_VAULT_APPROVAL_PENDING_HOURS`` (24).

Rows are tagged under the grant key over every column that matters (status, decider,
times, use): a row set to ``approved`` or ``used_at`` cleared with SQL fails its tag and
approves nothing. The decision path reads approvals through ``in_force`` only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.errors import AccessConfigError, ApprovalClosed, InvalidRequest, NotFound
from access.models import ApprovalRequest
from access.sealed import RowSeal, moment
from vault.models import aware
from vault.transactions import Transactions

DEFAULT_RULES = "identity:customer_support,financial:customer_support"
DEFAULT_WINDOW_MINUTES = 15
DEFAULT_PENDING_HOURS = 24
PENDING, APPROVED, REJECTED, USED, EXPIRED = "pending", "approved", "rejected", "used", "expired"
MAX_NOTE = 500


def parse_rules(
    raw: str, categories: Collection[str], fields: Collection[str], purposes: Collection[str]
) -> dict[str, frozenset[str]]:
    """``object:purpose,...`` (object: a category or a field) -> purpose -> objects;
    ``none`` turns four-eyes off. Anything unknown is a start-up error, not a silent gap."""
    raw = raw.strip()
    if raw.lower() == "none":
        return {}
    rules: dict[str, set[str]] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        obj, sep, purpose = (s.strip() for s in pair.partition(":"))
        if not sep or obj not in {*categories, *fields} or purpose not in purposes:
            raise AccessConfigError(
                f"PII_VAULT_FOUR_EYES: {pair[:64]!r} is not <category or field>:<purpose> "
                "of this schema and these purposes (or 'none')"
            )
        rules.setdefault(purpose, set()).add(obj)
    return {p: frozenset(objs) for p, objs in rules.items()}


@dataclass(frozen=True)
class Approval:
    id: int
    requester: str
    subject_id: str
    fields: tuple[str, ...]
    purpose: str
    ticket: str
    reason: str
    status: str
    requested_at: str
    decided_by: str | None
    decided_at: str | None
    note: str | None
    used_at: str | None
    expires_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "requester": self.requester,
            "subject_id": self.subject_id,
            "fields": list(self.fields),
            "purpose": self.purpose,
            "ticket": self.ticket,
            "reason": self.reason,
            "status": self.status,
            "requested_at": self.requested_at,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "note": self.note,
            "used_at": self.used_at,
            "expires_at": self.expires_at,
        }

    def alert(self) -> dict[str, Any]:
        """What the approvers' alert says: never the reason (free text may hold PII)."""
        return {
            "approval": self.id,
            "requester": self.requester,
            "subject_id": self.subject_id,
            "fields": list(self.fields),
            "purpose": self.purpose,
            "ticket": self.ticket,
            "expires_at": self.expires_at,
        }


def _material(row: ApprovalRequest) -> list[Any]:
    return [
        row.id,
        row.requester,
        row.subject_id,
        row.fields,
        row.purpose,
        row.ticket,
        row.status,
        moment(row.requested_at),
        row.decided_by or "",
        moment(row.decided_at),
        moment(row.used_at),
    ]


class Approvals:
    def __init__(
        self,
        tx: Transactions,
        seal: RowSeal,
        rules: Mapping[str, frozenset[str]],
        *,
        window_minutes: int = DEFAULT_WINDOW_MINUTES,
        pending_hours: int = DEFAULT_PENDING_HOURS,
    ) -> None:
        self.tx = tx
        self.seal = seal
        self.rules = dict(rules)
        self.window = dt.timedelta(minutes=window_minutes)
        self.pending_for = dt.timedelta(hours=pending_hours)

    # -- what a row says, once its tag holds ------------------------------------------

    def _expires(self, row: ApprovalRequest) -> dt.datetime:
        if row.status == PENDING or row.decided_at is None:
            return aware(row.requested_at) + self.pending_for
        return aware(row.decided_at) + self.window

    def _approval(self, row: ApprovalRequest) -> Approval:
        return Approval(
            id=row.id,
            requester=row.requester,
            subject_id=row.subject_id,
            fields=tuple(row.fields.split(",")),
            purpose=row.purpose,
            ticket=row.ticket,
            reason=row.reason,
            status=row.status,
            requested_at=moment(row.requested_at),
            decided_by=row.decided_by,
            decided_at=moment(row.decided_at) or None,
            note=row.note,
            used_at=moment(row.used_at) or None,
            expires_at=moment(self._expires(row)),
        )

    def _genuine(self, row: ApprovalRequest) -> bool:
        return self.seal.valid(_material(row), row.tag)

    def _seal(self, row: ApprovalRequest) -> None:
        row.tag = self.seal.tag(_material(row))

    def guarded(self, purpose: str, category: str | None, field: str) -> bool:
        objects = self.rules.get(purpose, frozenset())
        return field in objects or (category is not None and category in objects)

    # -- the requester -------------------------------------------------------------------

    def request(
        self,
        requester: str,
        subject_id: str,
        fields: Sequence[str],
        purpose: str,
        ticket: str,
        reason: str,
    ) -> tuple[Approval, bool]:
        """The pending (or approved, unused) request for exactly this, else a new one.
        Returns it and whether it is new (only a new one is audited and alerted)."""
        names = ",".join(sorted(set(fields)))
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin() as session:
            rows = session.scalars(
                select(ApprovalRequest).where(
                    ApprovalRequest.requester == requester,
                    ApprovalRequest.subject_id == subject_id,
                    ApprovalRequest.purpose == purpose,
                    ApprovalRequest.fields == names,
                    ApprovalRequest.ticket == ticket,
                    ApprovalRequest.status.in_((PENDING, APPROVED)),
                )
            ).all()
            for row in rows:
                if self._genuine(row) and self._expires(row) > now:
                    return self._approval(row), False
            row = ApprovalRequest(
                requester=requester,
                subject_id=subject_id,
                fields=names,
                purpose=purpose,
                ticket=ticket,
                reason=reason,
                status=PENDING,
                requested_at=now,
            )
            session.add(row)
            session.flush()
            self._seal(row)
            return self._approval(row), True

    def in_force(
        self, requester: str, purpose: str, subject_ids: Iterable[str], session: Session | None
    ) -> dict[str, list[Approval]]:
        """Approved, unused, genuine and within the window: subject -> approvals."""
        ids = sorted(set(subject_ids))
        if not ids:
            return {}
        now = dt.datetime.now(dt.UTC)
        with self.tx.reading(session) as read:
            rows = read.scalars(
                select(ApprovalRequest).where(
                    ApprovalRequest.requester == requester,
                    ApprovalRequest.purpose == purpose,
                    ApprovalRequest.status == APPROVED,
                    ApprovalRequest.subject_id.in_(ids),
                )
            ).all()
        out: dict[str, list[Approval]] = {}
        for row in rows:
            if row.used_at is None and self._genuine(row) and self._expires(row) > now:
                out.setdefault(row.subject_id, []).append(self._approval(row))
        return out

    def use(self, approval_id: int, requester: str, ticket: str) -> bool:
        """Mark an approval used, once (under a row lock: two workers cannot both use it)."""
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin() as session:
            row = session.get(ApprovalRequest, approval_id, with_for_update=True)
            if (
                row is None
                or not self._genuine(row)
                or row.status != APPROVED
                or row.used_at is not None
                or row.requester != requester
                or row.ticket != ticket
                or self._expires(row) <= now
            ):
                return False
            row.status, row.used_at = USED, now
            self._seal(row)
            return True

    # -- the approver ------------------------------------------------------------------

    def get(self, approval_id: int) -> Approval:
        """A genuine request; one failing its tag is as good as absent."""
        with self.tx.begin(read_only=True) as session:
            row = session.get(ApprovalRequest, approval_id)
            if row is None or not self._genuine(row):
                raise NotFound("no such approval request")
            return self._approval(row)

    def settle(self, approval_id: int, approver: str, approve: bool, note: str | None) -> Approval:
        """Approve or reject a pending request (the caller has checked who may)."""
        if note is not None and len(note) > MAX_NOTE:
            raise InvalidRequest(f"a note is at most {MAX_NOTE} characters")
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin() as session:
            row = session.get(ApprovalRequest, approval_id, with_for_update=True)
            if row is None or not self._genuine(row):
                raise NotFound("no such approval request")
            if row.status != PENDING or self._expires(row) <= now:
                raise ApprovalClosed(f"the request is {row.status}, not pending")
            row.status = APPROVED if approve else REJECTED
            row.decided_by, row.decided_at, row.note = approver, now, note
            self._seal(row)
            return self._approval(row)

    def listed(
        self, *, status: str | None = None, requester: str | None = None, limit: int = 100
    ) -> list[Approval]:
        """Genuine requests, newest first (a pending one past its time shows as expired)."""
        query = select(ApprovalRequest).order_by(ApprovalRequest.id.desc()).limit(limit)
        if status is not None:
            query = query.where(ApprovalRequest.status == status)
        if requester is not None:
            query = query.where(ApprovalRequest.requester == requester)
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin(read_only=True) as session:
            rows = [r for r in session.scalars(query).all() if self._genuine(r)]
            if status == PENDING:
                rows = [r for r in rows if self._expires(r) > now]
            return [self._approval(r) for r in rows]

    def expire(self) -> list[Approval]:
        """Maintenance: pending or approved-unused requests past their time become
        ``expired`` (once, whichever worker gets there first)."""
        now = dt.datetime.now(dt.UTC)
        out: list[Approval] = []
        with self.tx.begin() as session:
            rows = session.scalars(
                select(ApprovalRequest)
                .where(ApprovalRequest.status.in_((PENDING, APPROVED)))
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                if self._expires(row) > now or not self._genuine(row):
                    continue
                row.status = EXPIRED
                self._seal(row)
                out.append(self._approval(row))
        return out

    def delete_for(self, subject_id: str) -> None:
        """At shred: who asked for what stays in the audit log, not here."""
        with self.tx.begin() as session:
            for row in session.scalars(
                select(ApprovalRequest).where(ApprovalRequest.subject_id == subject_id)
            ).all():
                session.delete(row)
