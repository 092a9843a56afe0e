"""Sensitive personal information (PIPL art. 28-29, GDPR art. 9; the policy's §1
identity, biometric and financial-account data, and everything of a minor): writing or
reading it needs the subject's separate consent ``sensitive:<category>`` (a guardian's
for a minor), except for ``legal_compliance``, ``subject_access_request`` and shreds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from access.conditions import Ask, Finding, Item
from access.consents import Consents
from access.purposes import SENSITIVE, Purpose

EXEMPT_PURPOSES = frozenset({"subject_access_request", "legal_compliance"})
FIELD_ACTIONS = frozenset({"write", "correct", "detokenize", "read_masked", "reveal", "match"})


class SensitiveCondition:
    name = "sensitive"

    def __init__(self, consents: Consents) -> None:
        self.consents = consents

    def applies(self, action: str, purpose: Purpose) -> bool:
        return action in FIELD_ACTIONS and purpose.name not in EXEMPT_PURPOSES

    def check(
        self, ask: Ask, items: Sequence[Item], session: Session | None
    ) -> Mapping[int, Finding]:
        by_topic: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            if it.category is not None and (it.sensitive or it.subject.is_minor):
                by_topic[f"{SENSITIVE}{it.category}"].append(i)
        out: dict[int, Finding] = {}
        for topic, indexes in by_topic.items():
            unique = list({items[i].subject.subject_id: items[i].subject for i in indexes}.values())
            consented = self.consents.in_force_for(unique, topic, session)
            for i in indexes:
                if items[i].subject.subject_id not in consented:
                    out[i] = Finding("consent_required")
        return out

    def describe(self, action: str, purpose: Purpose) -> str:
        if not self.applies(action, purpose):
            return f"sensitive fields: {action} for {purpose.name} needs no separate consent"
        return (
            "a sensitive field (identity, biometric, financial account; any field of a minor) "
            "needs the separate consent sensitive:<category> in force: consent_required"
        )
