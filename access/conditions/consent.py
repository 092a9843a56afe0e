"""Consent-based purposes (policy §2(3), §8): the subject's consent, or for a minor a
guardian's, in force under the current policy edition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from access.conditions import Ask, Finding, Item
from access.consents import Consents
from access.purposes import Purpose


class ConsentCondition:
    name = "consent"

    def __init__(self, consents: Consents) -> None:
        self.consents = consents

    def applies(self, action: str, purpose: Purpose) -> bool:
        return purpose.requires_consent and action != "consent_write"

    def check(
        self, ask: Ask, items: Sequence[Item], session: Session | None
    ) -> Mapping[int, Finding]:
        subjects = list({it.subject.subject_id: it.subject for it in items}.values())
        consented = self.consents.in_force_for(subjects, ask.purpose.name, session)
        return {
            i: Finding("consent_required")
            for i, it in enumerate(items)
            if it.subject.subject_id not in consented
        }

    def describe(self, action: str, purpose: Purpose) -> str:
        return (
            f"purpose {purpose.name} needs the subject's consent in force under policy edition "
            f"{self.consents.policy_version} (a guardian's for a minor): consent_required"
        )
