"""Retention (privacy policy §4): values past their period are deleted, with their tokens."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select

from vault.models import BlindIndex, FieldValue, Token, utcnow
from vault.transactions import Transactions


def purge_expired(tx: Transactions, now: dt.datetime | None = None) -> int:
    """Delete field values whose ``retain_until`` has passed; returns how many."""
    now = now or utcnow()
    with tx.begin() as session:
        rows = session.execute(
            select(FieldValue.subject_id, FieldValue.field).where(
                FieldValue.retain_until.is_not(None), FieldValue.retain_until < now
            )
        ).all()
        for subject_id, name in rows:
            for model in (BlindIndex, Token, FieldValue):
                session.execute(
                    delete(model).where(model.subject_id == subject_id, model.field == name)
                )
        return len(rows)
