"""The emergency purpose (policy §2(2)) only under an open break-glass grant of the
asking principal (``access/break_glass.py``): refused ``break_glass_required`` otherwise;
allowed, each use carries the grant in its audit outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from access.break_glass import BreakGlass
from access.conditions import Ask, Finding, Item
from access.purposes import Purpose

EMERGENCY = "emergency"


class EmergencyCondition:
    name = "break_glass"

    def __init__(self, grants: BreakGlass) -> None:
        self.grants = grants

    def applies(self, action: str, purpose: Purpose) -> bool:
        return purpose.name == EMERGENCY and action != "break_glass"

    def check(
        self, ask: Ask, items: Sequence[Item], session: Session | None
    ) -> Mapping[int, Finding]:
        grant = self.grants.active(ask.principal, session)
        if grant is None:
            return {i: Finding("break_glass_required") for i in range(len(items))}
        note = {"grant": str(grant.id), "expires_at": grant.expires_at}
        return {i: Finding(note=note) for i in range(len(items))}

    def describe(self, action: str, purpose: Purpose) -> str:
        return (
            "the emergency purpose needs an open break-glass grant of this principal "
            "(POST /v1/break-glass): break_glass_required; each use is audited with the grant"
        )
