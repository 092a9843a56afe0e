"""Lawful disclosure to an authority (privacy policy §2(2), §3(3); issue 20): which
authority received a subject's data, under which legal instrument, when, and until when
the subject may not be told (an instrument that forbids telling them, e.g. during an
investigation). The disclosure itself is audited as ``disclose``; this table lets the
subject's own export list it once the withholding period has ended."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select

from access.errors import InvalidRequest
from access.models import Disclosure
from access.sealed import moment
from vault.transactions import Transactions

INSTRUMENTS = (
    "court_order",
    "warrant",
    "subpoena",
    "regulatory_request",
    "statutory_duty",
)


class Disclosures:
    def __init__(self, tx: Transactions, *, max_withhold_days: int = 180) -> None:
        self.tx = tx
        self.max_withhold_days = max_withhold_days

    def check(self, authority: str, instrument: str, reference: str, withhold_days: int) -> None:
        """Input checks, before anything is decided or read (a 400 names the problem)."""
        if instrument not in INSTRUMENTS:
            raise InvalidRequest(f"instrument must be one of {', '.join(INSTRUMENTS)}")
        for name, value in (("authority", authority), ("reference", reference)):
            if not value.strip() or len(value) > 200 or not value.isprintable():
                raise InvalidRequest(f"{name} must be 1-200 printable characters")
        if not 0 <= withhold_days <= self.max_withhold_days:
            raise InvalidRequest(
                f"withhold_days must be 0..{self.max_withhold_days} "
                "(PII_VAULT_DISCLOSURE_MAX_WITHHOLD_DAYS)"
            )

    def record(
        self,
        subject_id: str,
        *,
        authority: str,
        instrument: str,
        reference: str,
        ticket: str,
        withhold_days: int,
        actor: str,
    ) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        row = Disclosure(
            subject_id=subject_id,
            authority=authority.strip(),
            instrument=instrument,
            reference=reference.strip(),
            ticket=ticket,
            disclosed_by=actor[:128],
            disclosed_at=now,
            withheld_until=now + dt.timedelta(days=withhold_days) if withhold_days else None,
        )
        with self.tx.begin() as session:
            session.add(row)
        return _as_dict(row)

    def of(self, subject_id: str, *, withheld_too: bool) -> list[dict[str, Any]]:
        """The subject's disclosures; ``withheld_too=False`` (their own export): only those
        whose withholding period has ended."""
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(
                select(Disclosure)
                .where(Disclosure.subject_id == subject_id)
                .order_by(Disclosure.id)
            ).all()
        return [_as_dict(r) for r in rows if withheld_too or not _withheld(r, now)]

    def withheld(self, subject_id: str) -> bool:
        """Whether a disclosure of this subject may not be told to them yet."""
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(
                select(Disclosure).where(Disclosure.subject_id == subject_id)
            ).all()
        return any(_withheld(r, now) for r in rows)

    def delete_for(self, subject_id: str) -> None:
        with self.tx.begin() as session:
            session.execute(delete(Disclosure).where(Disclosure.subject_id == subject_id))


def _withheld(row: Disclosure, now: dt.datetime) -> bool:
    if row.withheld_until is None:
        return False
    until = row.withheld_until
    return (until if until.tzinfo else until.replace(tzinfo=dt.UTC)) > now


def _as_dict(r: Disclosure) -> dict[str, Any]:
    return {
        "authority": r.authority,
        "instrument": r.instrument,
        "reference": r.reference,
        "ticket": r.ticket,
        "disclosed_by": r.disclosed_by,
        "disclosed_at": moment(r.disclosed_at),
        "withheld_until": moment(r.withheld_until) or None,
    }
