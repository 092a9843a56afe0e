"""The transfer-basis registry (privacy policy §7: "transfers outside your jurisdiction
comply with applicable laws"): which legal basis lets which purpose reach which region.

A basis covers one subject's data or everyone's, one purpose or every purpose (``*``),
one destination region, from ``valid_from`` until ``valid_until`` (open-ended if None)
unless revoked. Rows are tagged under the grant key: one inserted or widened with SQL
covers nothing (``covering`` skips it, ``findings`` lists it). Which transfers happened
is the audit log's to say (every allowed cross-border access carries its basis in the
event), so the report reads the log, not this table.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from access.errors import InvalidRequest, NotFound
from access.grants import GrantSeal, TagMismatch
from access.models import TransferBasis
from access.purposes import REGION, Purposes
from vault.models import aware, iso
from vault.regions import known_region
from vault.transactions import Transactions
from vault.validation import canonical_subject_id

BASES = (
    "security_assessment",  # PIPL art. 38(1): the regulator's security assessment
    "standard_contract",  # PIPL art. 38(3), GDPR art. 46(2)(c): standard contract clauses
    "certification",  # PIPL art. 38(2): personal-information protection certification
    "separate_consent",  # PIPL art. 39: the subject's separate consent (cross_border:<to>)
    "contract_necessity",  # a contract with the subject needs it (GDPR art. 49(1)(b))
    "legal_duty",  # a legal obligation or an authority's lawful order
)
ANY_PURPOSE = "*"


@dataclass(frozen=True)
class Basis:
    id: int
    subject_id: str | None
    purpose: str
    destination: str
    basis: str
    reference: str
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    revoked_at: dt.datetime | None

    def in_force(self, at: dt.datetime) -> bool:
        return (
            self.revoked_at is None
            and aware(self.valid_from) <= at
            and (self.valid_until is None or at < aware(self.valid_until))
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject_id": self.subject_id,
            "purpose": self.purpose,
            "destination": self.destination,
            "basis": self.basis,
            "reference": self.reference,
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until),
            "revoked_at": iso(self.revoked_at),
        }


def _material(row: TransferBasis) -> list[Any]:
    return [
        row.id,
        row.subject_id or "",
        row.purpose,
        row.destination,
        row.basis,
        row.reference,
        aware(row.valid_from).isoformat(),
        aware(row.valid_until).isoformat() if row.valid_until else "",
        aware(row.revoked_at).isoformat() if row.revoked_at else "",
    ]


def _basis(row: TransferBasis) -> Basis:
    return Basis(
        row.id,
        row.subject_id,
        row.purpose,
        row.destination,
        row.basis,
        row.reference,
        row.valid_from,
        row.valid_until,
        row.revoked_at,
    )


class TransferBases:
    def __init__(self, tx: Transactions, purposes: Purposes, seal: GrantSeal) -> None:
        self.tx = tx
        self.purposes = purposes
        self.seal = seal

    def _tag(self, row: TransferBasis) -> str:
        return self.seal.mac("transfer_basis", _material(row))

    def _valid(self, row: TransferBasis) -> bool:
        try:
            self.seal.check("transfer_basis", _material(row), row.tag)
        except TagMismatch:
            return False
        return True

    def add(
        self,
        *,
        destination: str,
        basis: str,
        reference: str,
        purpose: str = ANY_PURPOSE,
        subject_id: str | None = None,
        valid_from: dt.datetime | None = None,
        valid_until: dt.datetime | None = None,
        actor: str,
    ) -> Basis:
        destination = str(destination).upper()
        if not REGION.fullmatch(destination) or not known_region(destination):
            raise InvalidRequest("destination must be an ISO 3166 region code such as DE or US")
        if basis not in BASES:
            raise InvalidRequest(f"basis must be one of {', '.join(BASES)}")
        if purpose != ANY_PURPOSE:
            self.purposes.get(purpose)
        reference = str(reference).strip()
        if not reference or len(reference) > 128 or not reference.isprintable():
            raise InvalidRequest("reference names the agreement, assessment or consent (1-128)")
        sid = canonical_subject_id(subject_id) if subject_id is not None else None
        start = aware(valid_from) if valid_from else dt.datetime.now(dt.UTC)
        if valid_until is not None and aware(valid_until) <= start:
            raise InvalidRequest("valid_until must be after valid_from")
        row = TransferBasis(
            subject_id=sid,
            purpose=purpose,
            destination=destination,
            basis=basis,
            reference=reference,
            valid_from=start,
            valid_until=aware(valid_until) if valid_until else None,
            revoked_at=None,
            recorded_at=dt.datetime.now(dt.UTC),
            recorded_by=actor[:128],
        )
        with self.tx.begin() as session:
            session.add(row)
            session.flush()  # the id is part of the tag
            row.tag = self._tag(row)
        return _basis(row)

    def revoke(self, basis_id: int) -> Basis:
        with self.tx.begin() as session:
            row = session.get(TransferBasis, int(basis_id), with_for_update=True)
            if row is None or not self._valid(row):
                raise NotFound(f"no transfer basis {int(basis_id)}")
            if row.revoked_at is None:
                row.revoked_at = dt.datetime.now(dt.UTC)
                row.tag = self._tag(row)
            return _basis(row)

    def recorded(self, *, include_ended: bool = True) -> list[Basis]:
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(select(TransferBasis).order_by(TransferBasis.id)).all()
            out = [_basis(r) for r in rows if self._valid(r)]
        return out if include_ended else [b for b in out if b.in_force(now)]

    def findings(self) -> list[int]:
        """Ids of rows failing their tag (inserted or edited with SQL): they cover nothing."""
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(select(TransferBasis).order_by(TransferBasis.id)).all()
            return [r.id for r in rows if not self._valid(r)]

    def covering(
        self,
        subject_ids: Sequence[str],
        purpose: str,
        destination: str,
        session: Session | None = None,
    ) -> dict[str, Basis]:
        """Per subject id: a basis in force now for (subject, purpose, destination), one
        query; a subject-specific basis is preferred to a general one."""
        ids = sorted(set(subject_ids))
        if not ids:
            return {}
        now = dt.datetime.now(dt.UTC)
        stmt = select(TransferBasis).where(
            TransferBasis.destination == destination,
            TransferBasis.purpose.in_([purpose, ANY_PURPOSE]),
            TransferBasis.revoked_at.is_(None),
            or_(TransferBasis.subject_id.is_(None), TransferBasis.subject_id.in_(ids)),
        )
        with self.tx.reading(session) as read:
            rows = read.scalars(stmt.order_by(TransferBasis.id)).all()
        usable = [_basis(r) for r in rows if self._valid(r)]
        usable = [b for b in usable if b.in_force(now)]
        general = next((b for b in usable if b.subject_id is None), None)
        out: dict[str, Basis] = {}
        for sid in ids:
            own = next((b for b in usable if b.subject_id == sid), None)
            chosen = own or general
            if chosen is not None:
                out[sid] = chosen
        return out


def transfer_notes(event: dict[str, Any]) -> Iterable[tuple[str | None, dict[str, str]]]:
    """(subject id, transfer note) for every allowed field of an audit event that crossed
    a border (``outcome`` as ``access/events.py`` writes it)."""
    outcome = event.get("outcome") or {}
    subjects = event.get("subject_ids") or []
    for key, item in outcome.items():
        if not isinstance(item, dict):
            continue
        if key.isdigit():  # a batch item
            for decision in (item.get("fields") or {}).values():
                if (
                    isinstance(decision, dict)
                    and decision.get("transfer")
                    and decision.get("redaction") != "denied"
                ):
                    yield item.get("subject_id"), decision["transfer"]
        elif item.get("transfer") and item.get("redaction") != "denied":
            yield (subjects[0] if subjects else None), item["transfer"]


def recipients_of(history: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Who outside the company received the subject's data (policy §3(1)), from their
    events: each recipient's kind, country, agreement, purposes, fields, first and last."""
    seen: dict[str, dict[str, Any]] = {}
    for event in history:
        outcome = event.get("outcome") or {}
        for key, item in outcome.items():
            if not isinstance(item, dict):
                continue
            pairs = list((item.get("fields") or {}).items()) if key.isdigit() else [(key, item)]
            for field, decision in pairs:
                who = decision.get("recipient") if isinstance(decision, dict) else None
                if not who or decision.get("redaction") == "denied":
                    continue
                entry = seen.setdefault(
                    str(who.get("name")),
                    {**who, "purposes": set(), "fields": set(), "first": event["ts"]},
                )
                entry["purposes"].add(str(event.get("purpose")))
                entry["fields"].add(field)
                entry["first"] = min(entry["first"], event["ts"])
                entry["last"] = max(entry.get("last", event["ts"]), event["ts"])
    return [
        {**e, "purposes": sorted(e["purposes"]), "fields": sorted(e["fields"])}
        for e in seen.values()
    ]


def report(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts of transfers by destination, purpose and basis; no personal data (no subject
    ids, no references to one subject's consent): events, subjects and field values."""
    by: Counter[tuple[str, str, str, str]] = Counter()
    subjects: dict[tuple[str, str, str, str], set[str]] = {}
    for event in events:
        seen: set[tuple[str | None, str, str, str, str]] = set()
        for sid, note in transfer_notes(event):
            key = (
                note.get("from", "?"),
                note.get("to", "?"),
                str(event.get("purpose")),
                note.get("basis", "?"),
            )
            if (sid, *key) in seen:
                continue
            seen.add((sid, *key))
            by[key] += 1
            subjects.setdefault(key, set()).add(str(sid))
    rows = [
        {
            "from": k[0],
            "to": k[1],
            "purpose": k[2],
            "basis": k[3],
            "accesses": n,
            "subjects": len(subjects[k]),
        }
        for k, n in sorted(by.items())
    ]
    return {"transfers": rows, "total": sum(by.values())}
