"""Retention floors at a shred (privacy policy §4; issue 20): a shred never destroys
records the law still requires (a field's ``retention_floor``, e.g. transaction records
for three years). Before the subject's key goes, those values and the prior versions a
correction kept are copied, re-encrypted, into a *held subject* of their own (same region,
its own subject key = the separate hold key; status ``held``; each value expiring at its
floor); everything else is shredded as usual. The receipt names the held fields and
their end date. When the last floor has passed, the maintenance tick shreds the held
subject — its receipt is the second one (``access/runtime.py`` audits it).

A held subject is readable only by the ``legal_compliance`` export (the guard decides);
it never appears in a lookup (not active) and cannot be shredded early (409).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vault.models import (
    STATUS_HELD,
    FieldValue,
    RetentionHold,
    Subject,
    Token,
    aware,
    utcnow,
)
from vault.service import VaultService
from vault.storage import Version


def _iso(value: dt.datetime) -> str:
    return aware(value).astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Held:
    hold_id: str
    subject_id: str
    fields: tuple[str, ...]
    until: str

    def as_dict(self) -> dict[str, Any]:
        return {"hold_id": self.hold_id, "fields": list(self.fields), "until": self.until}


def _held(row: RetentionHold) -> Held:
    return Held(row.hold_id, row.subject_id, tuple(row.fields.split(",")), _iso(row.until))


class Floors:
    def __init__(self, vault: VaultService) -> None:
        self.vault = vault

    def held_info(self, subject_id: str) -> dict[str, Any] | None:
        """What the subject's shred kept, for its receipt (None: nothing)."""
        with self.vault.tx.begin(read_only=True) as session:
            row = session.scalars(
                select(RetentionHold).where(RetentionHold.subject_id == subject_id)
            ).first()
            return _held(row).as_dict() if row is not None else None

    def keep(self, subject_id: str) -> Held | None:
        """Before a shred: copy what is still under a floor into a held subject (once; a
        retried shred finds the hold it made). None when nothing is under a floor."""
        now = utcnow()
        with self.vault.tx.begin(read_only=True) as session:
            existing = session.scalars(
                select(RetentionHold).where(RetentionHold.subject_id == subject_id)
            ).first()
            if existing is not None:
                return _held(existing)
        schema = self.vault.schema
        with self.vault.keyed(read_only=True) as session:
            subject = self.vault.store.readable_subject(session, subject_id)
            region, is_minor = subject.region, subject.is_minor
            values: dict[str, bytes] = {}
            ends: dict[str, dt.datetime] = {}
            for name, (row, plaintext) in self.vault.store.plain_fields(session, subject).items():
                floor = schema[name].floor
                end = floor.expires(aware(row.updated_at)) if floor is not None else None
                if end is not None and end > now:
                    values[name], ends[name] = plaintext, end
            versions = [
                Version(v.field, plaintext, v.written_at, v.superseded_at, v.keep_until)
                for v, plaintext in self.vault.store.prior_versions(session, subject)
            ]
        if not values and not versions:
            return None
        until = max([*ends.values(), *(aware(v.keep_until) for v in versions)])
        names = sorted({*values, *(v.field for v in versions)})

        def hold(session: Session, hold_id: str) -> None:
            held = session.get(Subject, hold_id)
            assert held is not None
            held.status = STATUS_HELD
            session.flush()
            session.execute(delete(Token).where(Token.subject_id == hold_id))  # nobody's to use
            for name, end in ends.items():
                row = session.get(FieldValue, (hold_id, name))
                assert row is not None
                row.retain_until = end
            self.vault.store.keep_versions(session, held, versions)
            session.add(
                RetentionHold(
                    hold_id=hold_id,
                    subject_id=subject_id,
                    fields=",".join(names),
                    until=until,
                    created_at=now,
                )
            )

        write = self.vault.validator.prepare(
            {name: schema[name].decode(plaintext) for name, plaintext in values.items()},
            region=region,
            is_minor=is_minor,
        )
        created = self.vault.create_subject(write, also=hold)
        return Held(created.subject_id, subject_id, tuple(names), _iso(until))

    def due(self, now: dt.datetime | None = None) -> list[Held]:
        """Held subjects whose last floor has passed and whose key is not yet gone."""
        now = now or utcnow()
        with self.vault.tx.begin(read_only=True) as session:
            rows = session.scalars(
                select(RetentionHold).where(
                    RetentionHold.until <= now, RetentionHold.released_at.is_(None)
                )
            ).all()
            return [_held(r) for r in rows]

    def released(self, hold_id: str) -> None:
        with self.vault.tx.begin() as session:
            row = session.get(RetentionHold, hold_id, with_for_update=True)
            if row is not None and row.released_at is None:
                row.released_at = utcnow()
