"""Consent records (privacy policy: consent-based purposes, guardians for minors, policy editions).

Consent is append-only history: the latest record for a subject and topic is the
one in force. A topic is a purpose (``purposes.toml``), ``sensitive:<category>``
(the separate consent sensitive personal information needs) or
``cross_border:<REGION>`` (a transfer whose basis is the subject's separate consent).
A guardian's consent names the guardian (a reference, never their personal data) and
how the guardian was verified (policy §6). Rows are tagged under the grant key
(``access/sealed.py``): a consent forged or edited with SQL is not in force.

Evidence (issue 20): each consent records its channel, the SHA-256 of the policy text of
its edition (``access/policy_texts.toml``; a caller's hash must match) and who recorded
it; a copy goes to the consent ledger under a pseudonym of the subject, which outlives
the shred for the limitation period (``PII_VAULT_CONSENT_LEDGER_DAYS``, 3 years), so the
vault can later show that processing was consented, then it goes.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Collection, Sequence
from importlib import resources
from typing import Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from access.errors import InvalidRequest
from access.facts import SubjectFacts
from access.models import Consent, ConsentLedgerEntry
from access.purposes import Purpose, Purposes, consent_topic
from access.sealed import RowSeal, moment
from vault.models import iso
from vault.transactions import Transactions

DEFAULT_POLICY_VERSION = "2024-11"  # the privacy policy's November 2024 edition
GivenBy = Literal["subject", "guardian"]
GUARDIAN_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CHANNELS = ("web", "app", "paper", "phone", "in_person", "api")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# How a guardian's authority and identity were checked (policy §6; PIPL art. 31).
VERIFICATIONS = (
    "id_document",
    "payment_card",
    "video_call",
    "signed_form",
    "government_eid",
)

__all__ = ["Consents", "SubjectFacts", "consent_topic"]


def policy_texts() -> dict[str, str]:
    """Edition -> SHA-256 of its text, as shipped."""
    text = resources.files("access").joinpath("policy_texts.toml").read_text(encoding="utf-8")
    editions = tomllib.loads(text).get("editions") or {}
    return {str(k): str(v) for k, v in editions.items()}


class Consents:
    def __init__(
        self,
        tx: Transactions,
        purposes: Purposes,
        *,
        policy_version: str = DEFAULT_POLICY_VERSION,
        categories: Collection[str] = (),
        seal: RowSeal | None = None,
        pseudonyms: RowSeal | None = None,
        ledger_days: int = 3 * 365,
    ) -> None:
        self.tx = tx
        self.purposes = purposes
        self.policy_version = policy_version
        self.categories = frozenset(categories)
        self.seal = seal  # None only in tests of the bare store
        self.pseudonyms = pseudonyms
        self.ledger_days = ledger_days
        self.texts = policy_texts()

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
        channel: str | None = None,
        text_sha256: str | None = None,
        recorded_by: str = "-",
    ) -> Consent:
        """A validated consent row, not yet stored (no subject id): one check for the
        consent endpoint and for consents given with a new subject."""
        self.topic(purpose)
        if channel is not None and channel not in CHANNELS:
            raise InvalidRequest(f"channel must be one of {', '.join(CHANNELS)}")
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
        known = self.texts.get(version)
        if text_sha256 is not None:
            if not SHA256.fullmatch(text_sha256):
                raise InvalidRequest("text_sha256 is the SHA-256 (hex) of the text shown")
            if known is not None and text_sha256 != known:
                raise InvalidRequest(
                    f"text_sha256 is not the text of policy edition {version}: the subject "
                    "consented to another text (re-consent under the current one)"
                )
        return Consent(
            subject_id="",
            purpose=purpose,
            granted=bool(granted),
            given_by=given_by,
            policy_version=version,
            guardian_ref=guardian_ref,
            verification=verification,
            channel=channel or "unstated",
            text_sha256=text_sha256 or known or "",
            recorded_by=recorded_by[:128],
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
        if self.pseudonyms is not None:
            pseudonym = self.pseudonym(subject_id)
            for row in rows:
                session.add(
                    ConsentLedgerEntry(
                        pseudonym=pseudonym,
                        purpose=row.purpose,
                        granted=row.granted,
                        given_by=row.given_by,
                        policy_version=row.policy_version,
                        channel=row.channel or "unstated",
                        text_sha256=row.text_sha256 or "",
                        recorded_by=row.recorded_by or "-",
                        recorded_at=now,
                    )
                )

    def pseudonym(self, subject_id: str) -> str:
        """The subject's name in the consent ledger: a MAC under the grant key, so the
        ledger alone says nothing of who, and the vault can still find a subject's rows."""
        if self.pseudonyms is None:
            raise InvalidRequest("no consent ledger here")
        return self.pseudonyms.tag([subject_id])

    def ledger(self, subject_id: str) -> list[dict[str, Any]]:
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(
                select(ConsentLedgerEntry)
                .where(ConsentLedgerEntry.pseudonym == self.pseudonym(subject_id))
                .order_by(ConsentLedgerEntry.id)
            ).all()
            return [_ledger_dict(r) for r in rows]

    def purge_ledger(self, now: dt.datetime | None = None) -> int:
        """Maintenance: ledger rows whose limitation period has passed go."""
        moment_ = now or dt.datetime.now(dt.UTC)
        with self.tx.begin() as session:
            result = session.execute(
                delete(ConsentLedgerEntry).where(
                    ConsentLedgerEntry.keep_until.is_not(None),
                    ConsentLedgerEntry.keep_until < moment_,
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

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
        """Called when the subject is shredded: consents go with the data; their ledger
        copies stay for the limitation period, from now."""
        keep = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.ledger_days)
        with self.tx.begin() as session:
            session.execute(delete(Consent).where(Consent.subject_id == subject_id))
            if self.pseudonyms is not None:
                session.execute(
                    update(ConsentLedgerEntry)
                    .where(ConsentLedgerEntry.pseudonym == self.pseudonym(subject_id))
                    .values(keep_until=keep)
                )


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
        c.channel or "",
        c.text_sha256 or "",
        c.recorded_by or "",
    ]


def _as_dict(c: Consent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "purpose": c.purpose,
        "granted": c.granted,
        "given_by": c.given_by,
        "policy_version": c.policy_version,
        "recorded_at": iso(c.recorded_at),
    }
    if c.given_by == "guardian":
        out["guardian_ref"] = c.guardian_ref
        out["verification"] = c.verification
    out["channel"] = c.channel or "unstated"
    out["text_sha256"] = c.text_sha256 or None
    out["recorded_by"] = c.recorded_by or None
    return out


def as_record(c: Consent) -> dict[str, Any]:
    """A stored consent as the API and the audit event show it."""
    return {"subject_id": c.subject_id, **_as_dict(c)}


def _ledger_dict(r: ConsentLedgerEntry) -> dict[str, Any]:
    return {
        "purpose": r.purpose,
        "granted": r.granted,
        "given_by": r.given_by,
        "policy_version": r.policy_version,
        "channel": r.channel,
        "text_sha256": r.text_sha256,
        "recorded_by": r.recorded_by,
        "recorded_at": moment(r.recorded_at),
        "keep_until": moment(r.keep_until) or None,
    }
