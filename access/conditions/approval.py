"""Four-eyes (issue 20; ``access/approvals.py``): a reveal of a guarded category or field
for a guarded purpose needs a second person's approval, in force for this requester,
subject and field: refused ``approval_required`` otherwise (the guard then files the
request); allowed, the use carries the approval in its audit outcome. Last in the order:
an approval is asked for only once everything else would allow the reveal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from access.approvals import Approvals
from access.conditions import Ask, Finding, Item
from access.purposes import Purpose

ACTIONS = frozenset({"reveal"})


class ApprovalCondition:
    name = "approval"

    def __init__(self, approvals: Approvals) -> None:
        self.approvals = approvals

    def applies(self, action: str, purpose: Purpose) -> bool:
        return action in ACTIONS and purpose.name in self.approvals.rules

    def check(
        self, ask: Ask, items: Sequence[Item], session: Session | None
    ) -> Mapping[int, Finding]:
        guarded = [
            i
            for i, it in enumerate(items)
            if self.approvals.guarded(ask.purpose.name, it.category, it.field)
        ]
        if not guarded:
            return {}
        in_force = self.approvals.in_force(
            ask.principal,
            ask.purpose.name,
            {items[i].subject.subject_id for i in guarded},
            session,
        )
        out: dict[int, Finding] = {}
        for i in guarded:
            item = items[i]
            covering = [
                a for a in in_force.get(item.subject.subject_id, []) if item.field in a.fields
            ]
            if not covering:
                out[i] = Finding("approval_required")
            else:
                first = min(covering, key=lambda a: a.id)
                out[i] = Finding(
                    note={"approval": str(first.id), "approved_by": str(first.decided_by)}
                )
        return out

    def describe(self, action: str, purpose: Purpose) -> str:
        objects = ", ".join(sorted(self.approvals.rules.get(purpose.name, ())))
        return (
            f"four-eyes: a reveal of {objects} for {purpose.name} needs a second person's "
            "approval (role approver, never the requester), used once by the requester with "
            "the same ticket within the window: approval_required files the request"
        )
