"""Lifecycle rules evaluated after the policy (privacy policy §2, §5, §6, §7): one module
per rule, one interface, one order (``ORDER``), run by the decider for every data path.

A condition may take visibility away, never give it; it sees only items still visible,
batch-first (one query for every item of a request), and names itself on each refusal
(``FieldDecision.by``), which the audit event and ``pii-vault policy explain`` show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.orm import Session

from access.facts import Ask, SubjectFacts
from access.purposes import Purpose

Reason = Literal[
    "forbidden",
    "consent_required",
    "justification_required",
    "restricted",
    "guardian_consent_required",
    "transfer_basis_required",
    "break_glass_required",
    "no_processing_agreement",
    "approval_required",
]


@dataclass(frozen=True)
class Item:
    """One (field, subject) pair of a request; ``field`` is ``*`` for subject-wide actions."""

    field: str
    category: str | None
    sensitive: bool
    subject: SubjectFacts


@dataclass(frozen=True)
class Finding:
    """A condition's word on one item: a refusal (``reason``), or an allowed item with
    something the audit event must record (``note``, e.g. a transfer and its basis)."""

    reason: Reason | None = None
    note: Mapping[str, str] | None = None


class Condition(Protocol):
    name: str  # each refusal's ``by``; listed by ``policy explain``

    def applies(self, action: str, purpose: Purpose) -> bool: ...

    def check(
        self, ask: Ask, items: Sequence[Item], session: Session | None
    ) -> Mapping[int, Finding]:
        """Index into ``items`` -> finding; an index absent: no objection."""
        ...

    def describe(self, action: str, purpose: Purpose) -> str:
        """One line for ``policy explain``: what this rule asks of such a request."""
        ...


__all__ = ["Ask", "Condition", "Finding", "Item", "Reason", "SubjectFacts"]
