"""Consent records (privacy policy: consent-based purposes, guardians for minors, policy editions).

Consent is append-only history: the latest record for a subject and purpose is
the one in force.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from access.errors import InvalidRequest
from access.models import Consent
from access.purposes import Purposes
from vault.transactions import Transactions

DEFAULT_POLICY_VERSION = "2024-11"  # the privacy policy's November 2024 edition
GivenBy = Literal["subject", "guardian"]


@dataclass(frozen=True)
class SubjectFacts:
    """What a decision needs to know about a subject: no values."""

    subject_id: str
    is_minor: bool


class Consents:
    def __init__(
        self,
        tx: Transactions,
        purposes: Purposes,
        *,
        policy_version: str = DEFAULT_POLICY_VERSION,
    ) -> None:
        self.tx = tx
        self.purposes = purposes
        self.policy_version = policy_version

    def record(
        self,
        subject_id: str,
        purpose: str,
        *,
        granted: bool,
        given_by: str,
        policy_version: str | None = None,
    ) -> dict[str, Any]:
        self.purposes.get(purpose)
        if given_by not in ("subject", "guardian"):
            raise InvalidRequest("given_by must be 'subject' or 'guardian'")
        version = policy_version or self.policy_version
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", version):
            raise InvalidRequest("policy_version must look like YYYY-MM")
        row = Consent(
            subject_id=subject_id,
            purpose=purpose,
            granted=bool(granted),
            given_by=given_by,
            policy_version=version,
            recorded_at=dt.datetime.now(dt.UTC),
        )
        with self.tx.begin() as session:
            session.add(row)
        return {"subject_id": row.subject_id, **_as_dict(row)}

    def in_force(self, subject: SubjectFacts, purpose: str) -> bool:
        """Granted, under the current policy version, and by a guardian for a minor."""
        return subject.subject_id in self.in_force_for([subject], purpose)

    def in_force_for(
        self, subjects: Sequence[SubjectFacts], purpose: str, session: Session | None = None
    ) -> set[str]:
        """The ids of ``subjects`` whose consent to ``purpose`` is in force, in one query
        (in ``session`` when the caller reads more in the same snapshot)."""
        ids = sorted({s.subject_id for s in subjects})
        if not ids:
            return set()
        latest_id = (
            select(func.max(Consent.id))
            .where(Consent.subject_id.in_(ids), Consent.purpose == purpose)
            .group_by(Consent.subject_id)
        )
        with self.tx.reading(session) as read:
            latest = {
                c.subject_id: c
                for c in read.scalars(select(Consent).where(Consent.id.in_(latest_id)))
            }
        minors = {s.subject_id for s in subjects if s.is_minor}
        return {
            subject_id
            for subject_id, c in latest.items()
            if c.granted
            and c.policy_version == self.policy_version
            and (subject_id not in minors or c.given_by == "guardian")
        }

    def of(self, subject_id: str) -> list[dict[str, Any]]:
        with self.tx.begin(read_only=True) as session:
            return [
                _as_dict(c)
                for c in session.scalars(
                    select(Consent).where(Consent.subject_id == subject_id).order_by(Consent.id)
                )
            ]

    def delete_for(self, subject_id: str) -> None:
        """Called when the subject is shredded: consents go with the data."""
        with self.tx.begin() as session:
            session.execute(delete(Consent).where(Consent.subject_id == subject_id))


def _as_dict(c: Consent) -> dict[str, Any]:
    return {
        "purpose": c.purpose,
        "granted": c.granted,
        "given_by": c.given_by,
        "policy_version": c.policy_version,
        "recorded_at": c.recorded_at.isoformat() if c.recorded_at else None,
    }
