"""Minors (policy §6: "minors must obtain guardian consent before using services";
"children's data is processed only with guardian approval"): a minor's data is written
or read, for any purpose, only while a guardian's consent for that purpose or for
general ``service_use`` is in force. The privacy office's own purposes
(``subject_access_request``, ``legal_compliance``), shreds, consent records and the
office's corrections are exempt: they are how a guardian's wishes are carried out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from access.conditions import Ask, Finding, Item
from access.consents import Consents
from access.purposes import Purpose

SERVICE_USE = "service_use"  # a guardian's consent to the child using the service at all
EXEMPT_PURPOSES = frozenset({"subject_access_request", "legal_compliance"})
EXEMPT_ACTIONS = frozenset({"shred", "consent_write", "attributes", "restrict"})


class GuardianCondition:
    name = "minors"

    def __init__(self, consents: Consents) -> None:
        self.consents = consents

    def applies(self, action: str, purpose: Purpose) -> bool:
        return purpose.name not in EXEMPT_PURPOSES and action not in EXEMPT_ACTIONS

    def check(
        self, ask: Ask, items: Sequence[Item], session: Session | None
    ) -> Mapping[int, Finding]:
        unique = list(
            {it.subject.subject_id: it.subject for it in items if it.subject.is_minor}.values()
        )
        if not unique:
            return {}
        approved = self.consents.in_force_for(unique, ask.purpose.name, session, guardian=True)
        rest = [s for s in unique if s.subject_id not in approved]
        if rest:
            approved |= self.consents.in_force_for(rest, SERVICE_USE, session, guardian=True)
        return {
            i: Finding("guardian_consent_required")
            for i, it in enumerate(items)
            if it.subject.is_minor and it.subject.subject_id not in approved
        }

    def describe(self, action: str, purpose: Purpose) -> str:
        if not self.applies(action, purpose):
            return f"a minor's data: {action} for {purpose.name} needs no guardian's consent"
        return (
            f"a minor's data needs a guardian's consent in force for {purpose.name} or for "
            f"{SERVICE_USE} (naming the guardian and how they were verified): "
            "guardian_consent_required, policy §6"
        )
