"""Retention (privacy policy §4): a value past its period is returned by no read
(``live_values`` is part of every value query in ``vault/storage.py``) and is deleted,
with its tokens and blind-index entries, by the purge — the serving process's
maintenance tick runs it (``access/runtime.py`` audits what it removed), as does
``pii-vault purge-expired``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, delete, func, or_, select

from vault.models import BlindIndex, FieldValue, FieldVersion, Token, utcnow
from vault.transactions import Transactions

PURGE_BATCH = 1000  # values per transaction: a backlog is worked off tick by tick


def live_values(now: dt.datetime | BindParameter[Any]) -> ColumnElement[bool]:
    """A value kept for the account's life, or whose period has not ended (``now`` may be
    a bound parameter, for statements built once)."""
    return or_(FieldValue.retain_until.is_(None), FieldValue.retain_until > now)


def overdue_count(tx: Transactions, now: dt.datetime | None = None) -> int:
    """Values past their period and not yet purged (``/metrics``: alert when it stays > 0)."""
    now = now or utcnow()
    with tx.begin(read_only=True) as session:
        return int(
            session.execute(
                select(func.count()).select_from(FieldValue).where(~live_values(now))
            ).scalar_one()
        )


def purge_expired(
    tx: Transactions,
    now: dt.datetime | None = None,
    *,
    limit: int = PURGE_BATCH,
    held: Collection[str] = (),
) -> list[tuple[str, str]]:
    """Delete up to ``limit`` values whose ``retain_until`` has passed, and prior versions
    whose floor has, except those of subjects under a legal hold (``held``); returns which
    (subject id, field) pairs were removed, for the audit event (``<field>@prior`` for a
    prior version)."""
    now = now or utcnow()
    where = [~live_values(now)]
    if held:
        where.append(FieldValue.subject_id.not_in(sorted(held)))
    with tx.begin() as session:
        rows = session.execute(
            select(FieldValue.subject_id, FieldValue.field)
            .where(*where)
            .order_by(FieldValue.subject_id, FieldValue.field)
            .limit(limit)
        ).all()
        for subject_id, name in rows:
            for model in (BlindIndex, Token, FieldValue):
                session.execute(
                    delete(model).where(model.subject_id == subject_id, model.field == name)
                )
        gone = [(str(s), str(f)) for s, f in rows]
        # Prior versions kept for a legal floor, once the floor has passed.
        version_where = [FieldVersion.keep_until <= now]
        if held:
            version_where.append(FieldVersion.subject_id.not_in(sorted(held)))
        versions = session.execute(
            select(FieldVersion.id, FieldVersion.subject_id, FieldVersion.field)
            .where(*version_where)
            .order_by(FieldVersion.id)
            .limit(limit)
        ).all()
        if versions:
            session.execute(
                delete(FieldVersion).where(FieldVersion.id.in_([v[0] for v in versions]))
            )
        return gone + [(str(v[1]), f"{v[2]}@prior") for v in versions]
