"""Four-eyes over the API and the console (issue 20): filing a request when a reveal waits
for approval, using an approval once, and the approvers' side (list, approve, reject),
each step decided and audited; approvers hear of a new request through the alert hook.

Decided before any lookup: whoever holds no ``approve`` right for any guarded field and
purpose is refused before a request is read; the request's own fields and purpose are
decided after. The reason a person gave is shown to approvers, never sent in an alert.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NoReturn

from access.alerts import AlertSink
from access.approvals import Approval, Approvals
from access.audit import AuditLog
from access.decisions import Decider, Decision
from access.errors import (
    ApprovalRequired,
    Forbidden,
    JustificationRequired,
    NotFound,
    SelfApproval,
)
from access.events import Caller, batch, completed, decided
from access.purposes import Justification


class ApprovalDesk:
    def __init__(
        self, decider: Decider, audit: AuditLog, approvals: Approvals, alerts: AlertSink
    ) -> None:
        self.decider = decider
        self.audit = audit
        self.approvals = approvals
        self.alerts = alerts

    # -- the requester (called by the guard's reveal) -------------------------------------

    @staticmethod
    def waiting(decision: Decision) -> list[str]:
        """The fields refused only for want of an approval, if nothing else was refused."""
        denied = {f: d for f, d in decision.fields.items() if not d.visible}
        if not denied or any(d.reason != "approval_required" for d in denied.values()):
            return []
        return sorted(denied)

    def file(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        fields: list[str],
        justification: Justification | None,
    ) -> NoReturn:
        """File (or find) the request for these fields, audit and alert a new one, refuse."""
        if justification is None or not justification.valid:
            raise JustificationRequired(
                "a reveal that needs a second person's approval needs a ticket and a reason"
            )
        approval, new = self.approvals.request(
            caller.principal,
            subject_id,
            fields,
            purpose,
            justification.ticket,
            justification.reason,
        )
        if new:
            detail = {"approval": approval.id, "status": "pending", "fields": fields}
            self.audit.append(
                completed(caller, "approve", purpose, subject_id, detail, justification)
            )
            self.alerts.send("approval_pending", approval.alert())
        raise ApprovalRequired(
            f"reveal of {', '.join(fields)} for {purpose} needs a second person's approval: "
            f"request {approval.id} is {approval.status} (GET /v1/approvals/{approval.id}); "
            "once approved, repeat the reveal with the same ticket",
            approval.id,
        )

    def use(self, caller: Caller, decision: Decision, justification: Justification | None) -> None:
        """Each approval the decision relied on, used now (once); raises if one was not."""
        ids = {
            int(d.notes["approval"]["approval"])
            for d in decision.fields.values()
            if d.notes and "approval" in d.notes
        }
        ticket = justification.ticket if justification is not None else ""
        for approval_id in sorted(ids):
            if not self.approvals.use(approval_id, caller.principal, ticket):
                raise ApprovalRequired(
                    f"approval {approval_id} was already used, has expired or was given for "
                    "another ticket",
                    approval_id,
                )

    # -- the approvers -------------------------------------------------------------------

    def _guarded_fields(self, purpose: str) -> list[str]:
        return sorted(
            f
            for f, category in self.decider.field_categories.items()
            if self.approvals.guarded(purpose, category, f)
        )

    def _approve_decision(self, caller: Caller, fields: list[str], purpose: str) -> Decision:
        return self.decider.decide(caller.principal, fields, "approve", purpose, gates=False)

    def may_approve(self, caller: Caller) -> bool:
        return any(
            self._approve_decision(caller, self._guarded_fields(p), p).permits
            for p in self.approvals.rules
        )

    def _gate(self, caller: Caller) -> None:
        """Decided before any request is read: some approve right, or a refusal (audited)."""
        if self.may_approve(caller):
            return
        purpose = next(iter(self.approvals.rules), "customer_support")
        fields = self._guarded_fields(purpose) or sorted(self.decider.field_categories)
        decision = self._approve_decision(caller, fields, purpose)
        self.audit.append(decided(caller, decision, None, verdict="deny"))
        raise Forbidden("approving reveals is not allowed")

    def pending(self, caller: Caller, *, limit: int = 100) -> list[Approval]:
        """Requests waiting for this approver: not their own, for fields they may approve."""
        self._gate(caller)
        shown = [
            a
            for a in self.approvals.listed(status="pending", limit=limit)
            if a.requester != caller.principal
            and self._approve_decision(caller, list(a.fields), a.purpose).allowed
        ]
        self.audit.append(
            batch(
                caller,
                "approve",
                "-",
                verdict="allow",
                subject_ids=[a.subject_id for a in shown],
                fields=sorted({f for a in shown for f in a.fields}),
                items={"*": {"listed": len(shown)}},
                justification=None,
            )
        )
        return shown

    def mine(self, caller: Caller, *, limit: int = 50) -> list[Approval]:
        """One's own requests: being signed in is enough (nothing of anyone else's)."""
        return self.approvals.listed(requester=caller.principal, limit=limit)

    def show(self, caller: Caller, approval_id: int) -> Approval:
        """One request, to its requester or to someone who may decide it. Anyone else
        gets the one audited refusal whether the request exists or not (no oracle)."""
        try:
            approval: Approval | None = self.approvals.get(approval_id)
        except NotFound:
            approval = None
        if approval is not None and approval.requester == caller.principal:
            return approval
        self._gate(caller)
        if approval is None:
            raise NotFound("no such approval request")
        if not self._approve_decision(caller, list(approval.fields), approval.purpose).allowed:
            raise Forbidden("approving this request is not allowed")
        return approval

    def settle(
        self, caller: Caller, approval_id: int, *, approve: bool, note: str | None = None
    ) -> Approval:
        """Approve or reject: decided (``approve`` of the request's fields for its purpose)
        and audited first, never by the requester; the outcome audited after."""
        self._gate(caller)
        approval = self.approvals.get(approval_id)
        justification = Justification(approval.ticket, approval.reason)
        decision = dataclasses.replace(
            self._approve_decision(caller, list(approval.fields), approval.purpose),
            subject_id=approval.subject_id,
        )
        if approval.requester == caller.principal:
            refused = {"refused": "self_approval", "approval": approval.id}
            self.audit.append(
                decided(caller, decision, justification, verdict="deny", outcome=refused)
            )
            raise SelfApproval("four eyes: nobody approves or rejects their own request")
        self.audit.append(decided(caller, decision, justification))
        if not decision.allowed:
            raise Forbidden(f"approving a reveal of {', '.join(approval.fields)} is not allowed")
        settled = self.approvals.settle(approval_id, caller.principal, approve, note)
        self.audit.append(
            completed(
                caller,
                "approve",
                approval.purpose,
                approval.subject_id,
                self._detail(settled),
                None,
            )
        )
        return settled

    @staticmethod
    def _detail(approval: Approval) -> dict[str, Any]:
        return {
            "approval": approval.id,
            "status": approval.status,
            "requester": approval.requester,
            "fields": list(approval.fields),
        }

    def expire(self) -> int:
        """Maintenance: requests past their time, audited as expired (once each)."""
        gone = self.approvals.expire()
        for approval in gone:
            self.audit.append(
                completed(
                    Caller(approval.requester, "maintenance"),
                    "approve",
                    approval.purpose,
                    approval.subject_id,
                    self._detail(approval),
                    None,
                )
            )
        return len(gone)
