"""Break-glass (privacy policy §2(2): "protecting life/property in emergencies"; issue 20):
the ``emergency`` purpose is usable only under a grant a named person opened with a
justification, for a bounded time (``PII_VAULT_BREAK_GLASS_MINUTES``, at most 60 by
default). Opening alerts the privacy office and is audited as ``break_glass``; every use
carries the grant in its audit outcome (``access/conditions/emergency.py``); the grant
closes by itself at its end, which the maintenance tick audits and alerts as well.
Rows are tagged under the grant key: one inserted or extended with SQL grants nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from access.errors import InvalidRequest
from access.models import BreakGlassGrant
from access.sealed import RowSeal, moment
from vault.models import aware
from vault.transactions import Transactions

DEFAULT_MINUTES = 60


@dataclass(frozen=True)
class Grant:
    id: int
    principal: str
    opened_at: str
    expires_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "grant": self.id,
            "principal": self.principal,
            "opened_at": self.opened_at,
            "expires_at": self.expires_at,
        }


def _material(row: BreakGlassGrant) -> list[Any]:
    return [row.id, row.principal, row.ticket, moment(row.opened_at), moment(row.expires_at)]


def _grant(row: BreakGlassGrant) -> Grant:
    return Grant(row.id, row.principal, moment(row.opened_at), moment(row.expires_at))


class BreakGlass:
    def __init__(self, tx: Transactions, seal: RowSeal, *, max_minutes: int = DEFAULT_MINUTES):
        self.tx = tx
        self.seal = seal
        self.max_minutes = max_minutes

    def open(self, principal: str, ticket: str, reason: str, minutes: int | None) -> Grant:
        minutes = self.max_minutes if minutes is None else minutes
        if not 1 <= minutes <= self.max_minutes:
            raise InvalidRequest(
                f"a break-glass grant lasts 1..{self.max_minutes} minutes "
                "(PII_VAULT_BREAK_GLASS_MINUTES)"
            )
        now = dt.datetime.now(dt.UTC)
        row = BreakGlassGrant(
            principal=principal,
            ticket=ticket,
            reason=reason,
            opened_at=now,
            expires_at=now + dt.timedelta(minutes=minutes),
        )
        with self.tx.begin() as session:
            session.add(row)
            session.flush()
            row.tag = self.seal.tag(_material(row))
        return _grant(row)

    def active(self, principal: str, session: Any = None) -> Grant | None:
        """The principal's grant in force now (valid tag, not expired), if any."""
        now = dt.datetime.now(dt.UTC)
        with self.tx.reading(session) as read:
            rows = read.scalars(
                select(BreakGlassGrant)
                .where(BreakGlassGrant.principal == principal)
                .order_by(BreakGlassGrant.id.desc())
                .limit(20)
            ).all()
        for row in rows:
            if aware(row.expires_at) > now and self.seal.valid(_material(row), row.tag):
                return _grant(row)
        return None

    def expired_unclosed(self) -> list[Grant]:
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(
                select(BreakGlassGrant).where(BreakGlassGrant.closed_at.is_(None))
            ).all()
        return [_grant(r) for r in rows if aware(r.expires_at) <= now]

    def mark_closed(self, grant_id: int) -> bool:
        with self.tx.begin() as session:
            row = session.get(BreakGlassGrant, grant_id, with_for_update=True)
            if row is None or row.closed_at is not None:
                return False
            row.closed_at = dt.datetime.now(dt.UTC)
            return True
