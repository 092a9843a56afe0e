"""Restriction, objection and deactivation (policy §5): the subject's restriction of this
purpose (or of all) refuses everything but what ``access/restrictions.py`` exempts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from access.conditions import Ask, Finding, Item
from access.purposes import Purpose
from access.restrictions import Restrictions, applies


class RestrictionCondition:
    name = "restriction"

    def __init__(self, restrictions: Restrictions) -> None:
        self.restrictions = restrictions

    def applies(self, action: str, purpose: Purpose) -> bool:
        return applies(action, purpose.name)

    def check(
        self, ask: Ask, items: Sequence[Item], session: Session | None
    ) -> Mapping[int, Finding]:
        ids = [it.subject.subject_id for it in items if it.subject.subject_id]
        restricted = self.restrictions.restricted_for(ids, ask.purpose.name, session)
        return {
            i: Finding("restricted")
            for i, it in enumerate(items)
            if it.subject.subject_id in restricted
        }

    def describe(self, action: str, purpose: Purpose) -> str:
        return (
            "a restriction, objection or deactivation recorded for the subject refuses this "
            "(restricted, policy §5)"
        )
