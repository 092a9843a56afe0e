"""What every guarded path shares: the parts it is built from, the lookup that is decided
before it happens (no existence oracle), the decide-and-audit step, and the one mapping
of a refused decision to its error (``refuse``). ``access/office.py`` (the privacy
office's paths) and ``access/guard.py`` (the data paths) build on it, so every path goes
through the same decide-audit-touch order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NoReturn

from access.alerts import AlertSink, NoAlerts
from access.approval_desk import ApprovalDesk
from access.audit import AuditLog
from access.batch import BatchGuard
from access.break_glass import BreakGlass
from access.budget import LookupBudget
from access.consents import Consents, SubjectFacts
from access.decisions import Decider, Decision
from access.disclosures import Disclosures
from access.errors import (
    AccessError,
    ApprovalRequired,
    BreakGlassRequired,
    ConsentRequired,
    Forbidden,
    GuardianConsentRequired,
    JustificationRequired,
    NoProcessingAgreement,
    Restricted,
    TransferBasisRequired,
)
from access.events import Caller, audited_id, decided, probe
from access.holds import LegalHolds
from access.policy import WHOLE_SUBJECT
from access.purposes import Justification
from access.tickets import TicketCheck
from access.usage import UsageBudgets
from access.watch import Watch
from vault.attributes import SubjectAttributes
from vault.errors import SubjectDamaged, SubjectNotFound, SubjectShredded
from vault.models import STATUS_ACTIVE, STATUS_DAMAGED, STATUS_HELD
from vault.results import SubjectInfo
from vault.service import VaultService
from vault.shredding import Shredder

SUBJECT_ACCESS = "subject_access_request"
EMERGENCY = "emergency"
LEGAL = "legal_compliance"


def refuse(decision: Decision, *, name_fields: bool = True) -> NoReturn:
    reason = decision.denial_reason()
    what = f"{decision.action} for purpose {decision.purpose or '-'}"
    if reason == "justification_required":
        raise JustificationRequired(
            f"{what} needs a justification: a ticket (e.g. CS-1234) and a reason"
        )
    if reason == "consent_required":
        separate = sorted(
            f for f, d in decision.fields.items() if not d.visible and d.by == "sensitive"
        )
        if separate:
            raise ConsentRequired(
                f"{what} needs the subject's separate consent to sensitive personal "
                f"information (sensitive:<category>) for {', '.join(separate)}"
            )
        raise ConsentRequired(f"{what} needs the subject's current consent")
    if reason == "restricted":
        raise Restricted(f"{what}: the subject has restricted or objected to this processing")
    if reason == "guardian_consent_required":
        raise GuardianConsentRequired(
            f"{what}: the subject is a minor and needs a guardian's consent for this purpose "
            "or for service_use"
        )
    if reason == "no_processing_agreement":
        raise NoProcessingAgreement(
            f"{what}: a processor receives personal data only under a processing agreement "
            "on record (pii-vault principal create --agreement)"
        )
    if reason == "break_glass_required":
        raise BreakGlassRequired(
            f"{what}: the emergency purpose needs a break-glass grant you opened (POST "
            "/v1/break-glass with a justification)"
        )
    if reason == "approval_required":
        raise ApprovalRequired(f"{what} needs a second person's approval (four-eyes)")
    if reason == "transfer_basis_required":
        raise TransferBasisRequired(
            f"{what}: the subject's data would leave its region; no transfer basis in force "
            "covers this purpose and destination"
        )
    if not name_fields:
        raise Forbidden(f"{what} is not allowed")
    denied = sorted(f for f, d in decision.fields.items() if not d.visible)
    raise Forbidden(f"{what} is not allowed for {', '.join(denied)}")


class GuardBase(BatchGuard):
    """The parts and the plumbing; ``tokenize`` and ``detokenize`` come from ``BatchGuard``."""

    def __init__(
        self,
        vault: VaultService,
        shredder: Shredder,
        decider: Decider,
        consents: Consents,
        audit: AuditLog,
        budget: LookupBudget | None = None,
        usage: UsageBudgets | None = None,
        tickets: TicketCheck | None = None,
        disclosures: Disclosures | None = None,
        break_glass: BreakGlass | None = None,
        alerts: AlertSink | None = None,
        approvals: ApprovalDesk | None = None,
        holds: LegalHolds | None = None,
        watch: Watch | None = None,
    ) -> None:
        super().__init__(vault, decider, audit, budget)
        self.watch = watch
        self.approvals = approvals
        self.holds = holds
        self.disclosures = disclosures
        self.break_glass = break_glass
        self.alerts: AlertSink = alerts if alerts is not None else NoAlerts()
        self.shredder = shredder
        self.consents = consents
        self.usage = usage
        self.tickets = tickets
        self.attributes = SubjectAttributes(vault)

    # -- plumbing ----------------------------------------------------------------------

    def _locate(
        self,
        caller: Caller,
        subject_id: str,
        actions: Sequence[str],
        purpose: str,
        fields: Sequence[str] = (WHOLE_SUBJECT,),
        justification: Justification | None = None,
        *,
        active: bool = True,
        held_ok: bool = False,
    ) -> SubjectInfo:
        """The subject, looked up only after the policy says the caller may do something to it.

        A caller with no right for these actions and this purpose gets one answer (403,
        audited) whether the subject exists, never existed or was shredded: no existence
        oracle. One with a right learns "not found"; "shredded" only if it may export or
        shred (everyone else hears "not found": erasure is nobody else's business).
        """
        names = list(fields) if fields else sorted(self.decider.field_categories)
        decisions = [
            self.decider.decide(
                caller.principal, names, action, purpose, None, justification, gates=False
            )
            for action in actions
        ]
        if not any(decision.permits for decision in decisions):
            first = dataclasses.replace(decisions[0], subject_id=audited_id(subject_id))
            self.audit.append(decided(caller, first, justification))  # each field's rule
            refuse(first, name_fields=bool(fields))  # the caller's own field list, if any
        try:
            info = self.vault.describe(subject_id)
        except SubjectNotFound:
            self.audit.append(
                probe(caller, actions[0], purpose, subject_id, "not_found", justification)
            )
            raise
        if active and info.status == STATUS_DAMAGED:  # lost, not erased: the same 500 for all
            self.audit.append(
                probe(caller, actions[0], purpose, subject_id, "subject_damaged", justification)
            )
            raise SubjectDamaged(
                "subject data lost: its key is missing (see `pii-vault reconcile`); the privacy "
                "office shreds it"
            )
        if active and info.status != STATUS_ACTIVE and not (held_ok and info.status == STATUS_HELD):
            self.audit.append(
                probe(caller, actions[0], purpose, subject_id, "shredded", justification)
            )
            if self._privacy_office(caller, purpose):
                raise SubjectShredded(f"subject is {info.status}")
            raise SubjectNotFound("unknown subject")
        return info

    def _privacy_office(self, caller: Caller, purpose: str) -> bool:
        """May this caller, for this purpose, export or shred (and so learn of an erasure)?"""
        return any(
            self.decider.decide(
                caller.principal, [WHOLE_SUBJECT], action, purpose, None, None, gates=False
            ).allowed
            for action in ("export", "shred")
        )

    def _facts(
        self,
        caller: Caller,
        subject_id: str,
        action: str,
        purpose: str,
        fields: Sequence[str],
        *,
        held_ok: bool = False,
    ) -> SubjectFacts:
        info = self._locate(caller, subject_id, [action], purpose, fields, held_ok=held_ok)
        return SubjectFacts(info.subject_id, info.is_minor, info.region)

    def _decide_and_record(
        self,
        caller: Caller,
        fields: Sequence[str],
        action: str,
        purpose: str | None,
        subject: SubjectFacts | None,
        justification: Justification | None,
    ) -> tuple[Decision, int]:
        decision = self.decider.decide(
            caller.principal, fields, action, purpose, subject, justification, region=caller.region
        )
        seq = self.audit.append(decided(caller, decision, justification))
        if not decision.allowed:
            refuse(decision)
        return decision, seq

    def _record_refusal(
        self,
        caller: Caller,
        decision: Decision,
        justification: Justification | None,
        exc: AccessError,
    ) -> None:
        refused = {"refused": exc.code}
        self.audit.append(decided(caller, decision, justification, verdict="deny", outcome=refused))
