"""Consent records (privacy policy: consent-based purposes, guardians for minors, policy editions).

Consent is append-only history: the latest record for a subject and topic is the
one in force. A topic is a purpose (``purposes.toml``), ``sensitive:<category>``
(the separate consent sensitive personal information needs) or
``cross_border:<REGION>`` (a transfer whose basis is the subject's separate consent).
A guardian's consent names the guardian (a reference, never their personal data) and
how the guardian was verified (policy §6). Rows are tagged under the grant key
(``access/sealed.py``): a consent forged or edited with SQL is not in force.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Sequence
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from access.errors import InvalidRequest, UnknownPurpose
from access.facts import SubjectFacts
from access.models import Consent
from access.purposes import Purpose, Purposes
from access.sealed import RowSeal, moment
from vault.transactions import Transactions

DEFAULT_POLICY_VERSION = "2024-11"  # the privacy policy's November 2024 edition
GivenBy = Literal["subject", "guardian"]
SENSITIVE = "sensitive:"
CROSS_BORDER = "cross_border:"
REGION = re.compile(r"^[A-Z0-9-]{2,16}$")
GUARDIAN_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# How a guardian's authority and identity were checked (policy §6; PIPL art. 31).
VERIFICATIONS = (
    "id_document",
    "payment_card",
    "video_call",
    "signed_form",
    "government_eid",
)

__all__ = ["Consents", "SubjectFacts", "consent_topic"]


def consent_topic(name: str, purposes: Purposes, categories: Collection[str]) -> Purpose:
    """What a consent can be given for: a purpose, ``sensitive:<category>`` or
    ``cross_border:<REGION>``; anything else is UnknownPurpose."""
    if isinstance(name, str) and name.startswith(SENSITIVE):
        if name[len(SENSITIVE) :] in categories:
            return Purpose(name, "Separate consent to sensitive personal information", False, False)
    elif isinstance(name, str) and name.startswith(CROSS_BORDER):
        if REGION.fullmatch(name[len(CROSS_BORDER) :]):
            return Purpose(name, "Separate consent to a cross-border transfer", False, False)
    else:
        return purposes.get(name)
    raise UnknownPurpose(f"unknown consent topic {str(name)[:64]!r}")


class Consents:
    def __init__(
        self,
        tx: Transactions,
        purposes: Purposes,
        *,
        policy_version: str = DEFAULT_POLICY_VERSION,
        categories: Collection[str] = (),
        seal: RowSeal | None = None,
    ) -> None:
        self.tx = tx
        self.purposes = purposes
        self.policy_version = policy_version
        self.categories = frozenset(categories)
        self.seal = seal  # None only in tests of the bare store

    def topic(self, name: str) -> Purpose:
        return consent_topic(name, self.purposes, self.categories)

    def prepare(
        self,
        purpose: str,
        *,
        granted: bool,
        given_by: str,
        policy_version: str | None = None,
        guardian_ref: str | None = None,
        verification: str | None = None,
    ) -> Consent:
        """A validated consent row, not yet stored (no subject id): one check for the
        consent endpoint and for consents given with a new subject."""
        self.topic(purpose)
        if given_by not in ("subject", "guardian"):
            raise InvalidRequest("given_by must be 'subject' or 'guardian'")
        version = policy_version or self.policy_version
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", version):
            raise InvalidRequest("policy_version must look like YYYY-MM")
        if given_by == "guardian":
            if guardian_ref is None or not GUARDIAN_REF.fullmatch(str(guardian_ref)):
                raise InvalidRequest(
                    "a guardian's consent names the guardian: guardian_ref (a reference such "
                    "as an account id, not personal data; letters, digits, . _ : -)"
                )
            if verification not in VERIFICATIONS:
                raise InvalidRequest(
                    f"a guardian's consent says how the guardian was verified: verification "
                    f"one of {', '.join(VERIFICATIONS)}"
                )
        elif guardian_ref is not None or verification is not None:
            raise InvalidRequest("guardian_ref and verification belong to a guardian's consent")
        return Consent(
            subject_id="",
            purpose=purpose,
            granted=bool(granted),
            given_by=given_by,
            policy_version=version,
            guardian_ref=guardian_ref,
            verification=verification,
        )

    def store(self, session: Session, subject_id: str, rows: Sequence[Consent]) -> None:
        """Rows from ``prepare`` for ``subject_id``, in the caller's transaction."""
        now = dt.datetime.now(dt.UTC)
        for row in rows:
            row.subject_id = subject_id
            row.recorded_at = now
            session.add(row)
        if self.seal is not None:
            session.flush()  # the id is part of the tag
            for row in rows:
                row.tag = self.seal.tag(_material(row))

    def _valid(self, row: Consent) -> bool:
        return self.seal is None or self.seal.valid(_material(row), row.tag)

    def seal_untagged(self) -> int:
        """Tag the rows written before tags existed (once, at the upgrade; audited by the
        caller). A row whose tag is wrong stays refused."""
        if self.seal is None:
            return 0
        with self.tx.begin() as session:
            rows = session.scalars(select(Consent).where(Consent.tag.is_(None))).all()
            for row in rows:
                row.tag = self.seal.tag(_material(row))
            return len(rows)

    def record(self, subject_id: str, purpose: str, **given: Any) -> dict[str, Any]:
        row = self.prepare(purpose, **given)
        with self.tx.begin() as session:
            self.store(session, subject_id, [row])
        return {"subject_id": row.subject_id, **_as_dict(row)}

    def in_force(self, subject: SubjectFacts, purpose: str) -> bool:
        """Granted, under the current policy version, and by a guardian for a minor."""
        return subject.subject_id in self.in_force_for([subject], purpose)

    def in_force_for(
        self,
        subjects: Sequence[SubjectFacts],
        purpose: str,
        session: Session | None = None,
        *,
        guardian: bool = False,
    ) -> set[str]:
        """The ids of ``subjects`` whose consent to ``purpose`` is in force, in one query
        (in ``session`` when the caller reads more in the same snapshot). A minor's counts
        only from a guardian; ``guardian``: only a guardian's counts, for anyone."""
        ids = sorted({s.subject_id for s in subjects if s.subject_id})
        latest: dict[str, tuple[bool, str, str]] = {}
        if ids:
            latest_id = (
                select(func.max(Consent.id))
                .where(Consent.subject_id.in_(ids), Consent.purpose == purpose)
                .group_by(Consent.subject_id)
            )
            with self.tx.reading(session) as read:
                latest = {
                    c.subject_id: (c.granted, c.given_by, c.policy_version)
                    for c in read.scalars(select(Consent).where(Consent.id.in_(latest_id)))
                    if self._valid(c)  # a forged or edited newest row: not in force
                }
        out: set[str] = set()
        for s in subjects:
            pending = [by for topic, by in s.pending if topic == purpose]
            state = (
                (True, pending[-1], self.policy_version) if pending else latest.get(s.subject_id)
            )
            if state is None:
                continue
            granted, given_by, version = state
            needs_guardian = guardian or s.is_minor
            if (
                granted
                and version == self.policy_version
                and (not needs_guardian or given_by == "guardian")
            ):
                out.add(s.subject_id)
        return out

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


def _material(c: Consent) -> list[Any]:
    return [
        c.id,
        c.subject_id,
        c.purpose,
        bool(c.granted),
        c.given_by,
        c.policy_version,
        moment(c.recorded_at),
        c.guardian_ref or "",
        c.verification or "",
    ]


def _as_dict(c: Consent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "purpose": c.purpose,
        "granted": c.granted,
        "given_by": c.given_by,
        "policy_version": c.policy_version,
        "recorded_at": c.recorded_at.isoformat() if c.recorded_at else None,
    }
    if c.given_by == "guardian":
        out["guardian_ref"] = c.guardian_ref
        out["verification"] = c.verification
    return out
