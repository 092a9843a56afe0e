"""Every data path, through one decision function and one audit log.

Order for each call: gather the facts a decision needs (no plaintext), decide,
commit the audit event (allow or deny, with the justification), and only then
touch data. If the audit event cannot be committed the call fails with
AuditUnavailable and nothing is read, written or returned. Batches go through
``access.batch``; event shapes come from ``access.events``.

Past 400 lines (about 850): one class holds every single-subject path so that each
visibly follows the same decide-audit-touch order through the same helpers;
splitting it would put that order in several places.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from access.alerts import AlertSink, NoAlerts
from access.approval_desk import ApprovalDesk
from access.audit import AuditLog, VerifyResult
from access.batch import BatchGuard
from access.break_glass import BreakGlass, Grant
from access.budget import LookupBudget
from access.consents import Consents, SubjectFacts, as_record
from access.decisions import Decider, Decision
from access.disclosures import Disclosures
from access.errors import (
    AccessError,
    ApprovalRequired,
    BreakGlassRequired,
    ConsentRequired,
    Forbidden,
    GuardianConsentRequired,
    InvalidRequest,
    JustificationRequired,
    NoProcessingAgreement,
    Restricted,
    Throttled,
    TicketRejected,
    TicketSystemUnavailable,
    TransferBasisRequired,
)
from access.events import Caller, audited_id, batch, completed, decided, for_subject, probe
from access.holds import LegalHolds
from access.policy import WHOLE_SUBJECT
from access.purposes import Justification
from access.tickets import TicketCheck
from access.transfers import recipients_of, transfer_notes
from access.usage import UsageBudgets
from access.watch import Watch
from vault.attributes import Attributes, SubjectAttributes
from vault.errors import SubjectNotFound, SubjectOnHold, SubjectShredded, ValidationError
from vault.models import STATUS_ACTIVE, STATUS_HELD
from vault.receipts import DeletionReceipt
from vault.results import CreatedSubject, SubjectInfo, SubjectView
from vault.schema import Value
from vault.service import VaultService
from vault.shredding import Shredder
from vault.storage import EXTERNAL_ID

__all__ = ["Caller", "GuardedVault"]
SUBJECT_ACCESS = "subject_access_request"
EMERGENCY = "emergency"
LEGAL = "legal_compliance"


def _refuse(decision: Decision, *, name_fields: bool = True) -> NoReturn:
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


class GuardedVault(BatchGuard):
    """Single-subject calls here; ``tokenize`` and ``detokenize`` come from ``BatchGuard``."""

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
            _refuse(first, name_fields=bool(fields))  # the caller's own field list, if any
        try:
            info = self.vault.describe(subject_id)
        except SubjectNotFound:
            self.audit.append(
                probe(caller, actions[0], purpose, subject_id, "not_found", justification)
            )
            raise
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
            _refuse(decision)
        return decision, seq

    # -- writes ---------------------------------------------------------------------------

    def create_subject(
        self,
        caller: Caller,
        purpose: str,
        fields: Mapping[str, Value],
        *,
        external_id: str | None = None,
        region: str | None = None,
        is_minor: bool | None = None,
        justification: Justification | None = None,
        consents: Sequence[Mapping[str, Any]] = (),
    ) -> CreatedSubject:
        """Create a subject; ``consents`` given with it (e.g. a guardian's for a minor, the
        separate consent sensitive data needs) are each decided as ``consent_write`` for
        their topic, count for this request's own decision, and are stored in the same
        transaction as the subject: all of it, or nothing."""
        write = self.vault.validator.prepare(
            fields, external_id=external_id, region=region, is_minor=is_minor
        )
        # Named up front (audited before it exists), keyed in a shard of its region.
        write = dataclasses.replace(write, subject_id=self.vault.new_subject_id(write.region))
        assert write.subject_id is not None
        rows = [
            self.consents.prepare(**{**dict(c), "recorded_by": caller.principal}) for c in consents
        ]
        topics = [r.purpose for r in rows]
        if len(set(topics)) != len(topics):
            raise InvalidRequest("one consent per topic")
        bare = SubjectFacts(
            write.subject_id, write.is_minor, write.region or self.vault.default_region
        )
        facts = dataclasses.replace(
            bare, pending=frozenset((r.purpose, r.given_by) for r in rows if r.granted)
        )
        decisions = [
            self.decider.decide(
                caller.principal,
                [WHOLE_SUBJECT],
                "consent_write",
                topic,
                bare,
                None,
                region=caller.region,
            )
            for topic in topics
        ]
        if write.values:
            decisions.append(
                self.decider.decide(
                    caller.principal,
                    list(write.values),
                    "write",
                    purpose,
                    facts,
                    justification,
                    region=caller.region,
                )
            )
            for decision in decisions:
                self.audit.append(
                    decided(caller, decision, justification if decision.action == "write" else None)
                )
            for decision in decisions:
                if not decision.allowed:
                    _refuse(decision)
        else:
            for decision in decisions:
                self.audit.append(decided(caller, decision, None))
            # An empty subject: allowed to whoever may write some field for this purpose.
            decision = self.decider.decide(
                caller.principal,
                sorted(self.decider.field_categories),
                "write",
                purpose,
                facts,
                justification,
                region=caller.region,
            )
            may_write = decision.permits
            outcome = {
                "*": {
                    "redaction": "plain" if may_write else "denied",
                    "reason": None if may_write else decision.denial_reason(),
                }
            }
            self.audit.append(
                decided(
                    caller,
                    decision,
                    justification,
                    verdict="allow" if may_write else "deny",
                    outcome=outcome,
                )
            )
            for consent_decision in decisions:
                if not consent_decision.allowed:
                    _refuse(consent_decision)
            if not may_write:
                _refuse(decision)
        if not rows:
            return self.vault.create_subject(write)
        created = self.vault.create_subject(
            write, also=lambda session, sid: self.consents.store(session, sid, rows)
        )
        self._consent_recorded(caller, created.subject_id, [as_record(r) for r in rows])
        return created

    def put_fields(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        fields: Mapping[str, Value],
        justification: Justification | None = None,
    ) -> dict[str, str]:
        """Add fields (``write``) and correct fields already stored (``correct``, privacy
        policy §5): each kind decided and audited as its own action, all or nothing."""
        write = self.vault.validator.prepare(fields, allow_empty=False)
        info = self._locate(
            caller, subject_id, ["write", "correct"], purpose, list(write.values), justification
        )
        facts = SubjectFacts(info.subject_id, info.is_minor, info.region)
        stored = set(info.fields)
        kinds = {
            "write": [n for n in write.values if n not in stored],
            "correct": [n for n in write.values if n in stored],
        }
        decisions = [
            self.decider.decide(
                caller.principal, names, action, purpose, facts, justification, region=caller.region
            )
            for action, names in kinds.items()
            if names
        ]
        for decision in decisions:
            self.audit.append(decided(caller, decision, justification))
        for decision in decisions:
            if not decision.allowed:
                _refuse(decision)
        return self.vault.put_fields(facts.subject_id, write)

    def set_consent(
        self,
        caller: Caller,
        subject_id: str,
        consent_purpose: str,
        *,
        granted: bool,
        given_by: str,
        policy_version: str | None = None,
        guardian_ref: str | None = None,
        verification: str | None = None,
        channel: str | None = None,
        text_sha256: str | None = None,
    ) -> dict[str, Any]:
        """Record a consent; the writer's permission is checked against the consent's topic.
        A guardian's names the guardian and how they were verified (policy §6); the whole
        consent, evidence included, is audited once recorded (issue 20)."""
        given: dict[str, Any] = {
            "granted": granted,
            "given_by": given_by,
            "policy_version": policy_version,
            "guardian_ref": guardian_ref,
            "verification": verification,
            "channel": channel,
            "text_sha256": text_sha256,
            "recorded_by": caller.principal,
        }
        self.consents.prepare(consent_purpose, **given)  # a malformed consent is a 400 first
        facts = self._facts(caller, subject_id, "consent_write", consent_purpose, [WHOLE_SUBJECT])
        self._decide_and_record(
            caller, [WHOLE_SUBJECT], "consent_write", consent_purpose, facts, None
        )
        recorded = self.consents.record(facts.subject_id, consent_purpose, **given)
        self._consent_recorded(caller, facts.subject_id, [recorded])
        return recorded

    def _consent_recorded(
        self, caller: Caller, subject_id: str, consents: Sequence[Mapping[str, Any]]
    ) -> None:
        """The consents as stored (granted, given_by, edition, evidence) into the log."""
        for consent in consents:
            detail = {k: v for k, v in consent.items() if k not in ("subject_id", "recorded_at")}
            self.audit.append(
                completed(
                    caller, "consent_write", str(consent["purpose"]), subject_id, detail, None
                )
            )

    def change_attributes(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        *,
        is_minor: bool | None = None,
        region: str | None = None,
        justification: Justification | None = None,
    ) -> Attributes:
        """The privacy office corrects a subject's minor status or region: decided and
        audited first, the change recorded after (which attributes, never their values)."""
        facts = self._facts(caller, subject_id, "attributes", purpose, [WHOLE_SUBJECT])
        self._decide_and_record(
            caller, [WHOLE_SUBJECT], "attributes", purpose, facts, justification
        )
        now, changed = self.attributes.change(facts.subject_id, is_minor=is_minor, region=region)
        self.audit.append(
            completed(
                caller, "attributes", purpose, now.subject_id, {"changed": changed}, justification
            )
        )
        return now

    def restrict(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        scope: str,
        kind: str,
        justification: Justification | None = None,
    ) -> list[dict[str, Any]]:
        """Record a restriction, an objection, or a lift (policy §5): the privacy office,
        decided and audited first; returns the subject's restriction history."""
        restrictions = self.decider.restrictions
        if restrictions is None:
            raise Forbidden("restrictions are not kept here")
        facts = self._facts(caller, subject_id, "restrict", purpose, [WHOLE_SUBJECT])
        self._decide_and_record(caller, [WHOLE_SUBJECT], "restrict", purpose, facts, justification)
        recorded = restrictions.record(facts.subject_id, scope, kind)
        self.audit.append(
            completed(caller, "restrict", purpose, facts.subject_id, recorded, justification)
        )
        return restrictions.of(facts.subject_id)

    # -- reads ---------------------------------------------------------------------------

    def masked_view(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        justification: Justification | None = None,
    ) -> SubjectView:
        """Masked values of the fields the caller may see; others are left out."""
        info = self._locate(caller, subject_id, ["read_masked"], purpose, [], justification)
        facts = SubjectFacts(info.subject_id, info.is_minor, info.region)
        names = info.fields or sorted(self.decider.field_categories)
        decision = self.decider.decide(
            caller.principal,
            names,
            "read_masked",
            purpose,
            facts,
            justification,
            region=caller.region,
        )
        self.audit.append(decided(caller, decision, justification))
        visible = [n for n, d in decision.fields.items() if d.visible]
        if not visible:
            _refuse(decision, name_fields=False)  # which fields it holds is not theirs to know
        view = self.vault.masked_view(info.subject_id, [n for n in visible if n in info.fields])
        if self._privacy_office(caller, purpose):
            return view
        # Identifiers beyond the fields shown are for the privacy office only.
        return dataclasses.replace(view, external_id=None, region=None)

    def reveal(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        fields: Sequence[str],
        justification: Justification | None = None,
    ) -> tuple[dict[str, Value], int]:
        """Plaintext of the named fields, all or nothing; returns the values and the audit seq."""
        unknown = [f for f in fields if f not in self.decider.field_categories]
        if unknown or not fields:
            raise ValidationError(
                "invalid field list",
                {str(n)[:64]: "unknown_field" for n in unknown} or {"fields": "empty"},
            )
        facts = self._facts(caller, subject_id, "reveal", purpose, list(fields))
        decision = self.decider.decide(
            caller.principal,
            list(fields),
            "reveal",
            purpose,
            facts,
            justification,
            region=caller.region,
        )
        if decision.allowed:
            self._reveal_gates(caller, decision, purpose, justification)
        seq = self.audit.append(decided(caller, decision, justification))
        if not decision.allowed:
            waiting = self.approvals.waiting(decision) if self.approvals is not None else []
            if self.approvals is not None and waiting:  # four-eyes: file the request
                self._ticket_gate(caller, decision, justification)
                self.approvals.file(caller, facts.subject_id, purpose, waiting, justification)
            _refuse(decision)
        return self.vault.reveal(facts.subject_id, fields), seq

    def match(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        field: str,
        presented: bytes,
        justification: Justification | None = None,
    ) -> bool:
        """Compare a presented biometric template with the stored one (action ``match``):
        decided and audited first, the result (match or not, never a template) audited
        after it is known and before it is returned."""
        facts = self._facts(caller, subject_id, "match", purpose, [field])
        self._decide_and_record(caller, [field], "match", purpose, facts, justification)
        result = self.vault.match(facts.subject_id, field, presented)
        self.audit.append(
            completed(
                caller,
                "match",
                purpose,
                facts.subject_id,
                {"field": field, "match": result},
                justification,
            )
        )
        return result

    def _reveal_gates(
        self,
        caller: Caller,
        decision: Decision,
        purpose: str,
        justification: Justification | None,
    ) -> None:
        """After the policy allowed a reveal, before it is audited as allowed: the ticket
        system's word on the ticket (if one is configured and the reveal is justified),
        the person's reveal and read budgets, then the approvals it relies on, used once.
        A refusal is audited as a denial and raised."""
        self._ticket_gate(caller, decision, justification)
        try:
            if self.usage is not None:
                self.usage.reveal(caller.principal, purpose)
                plain = sum(1 for d in decision.fields.values() if d.redaction == "plain")
                self.usage.read(caller.principal, caller.roles, plain)
            if self.approvals is not None:
                self.approvals.use(caller, decision, justification)
        except (Throttled, ApprovalRequired) as exc:
            self._record_refusal(caller, decision, justification, exc)
            raise

    def _ticket_gate(
        self, caller: Caller, decision: Decision, justification: Justification | None
    ) -> None:
        """The ticket system's word on a justified reveal's ticket (if one is configured):
        before a reveal, and before a request for approval is filed."""
        if self.tickets is None or justification is None:
            return
        try:
            self.tickets.check(justification.ticket, caller.principal)
        except (TicketRejected, TicketSystemUnavailable) as exc:
            self._record_refusal(caller, decision, justification, exc)
            raise

    def _record_refusal(
        self,
        caller: Caller,
        decision: Decision,
        justification: Justification | None,
        exc: AccessError,
    ) -> None:
        refused = {"refused": exc.code}
        self.audit.append(decided(caller, decision, justification, verdict="deny", outcome=refused))

    def _exportable(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        justification: Justification | None = None,
        action: str = "export",
    ) -> str:
        """The subject's id once an export (or a part of one) is decided and audited. For
        ``legal_compliance`` also a held subject (records a retention floor keeps)."""
        facts = self._facts(
            caller, subject_id, action, purpose, [WHOLE_SUBJECT], held_ok=purpose == LEGAL
        )
        self._decide_and_record(caller, [WHOLE_SUBJECT], action, purpose, facts, justification)
        return facts.subject_id

    def _history(self, subject_id: str, limit: int, *, own: bool) -> list[dict[str, Any]]:
        """The subject's events, each cut down to them. ``own``: for the subject's own
        request, which may not yet learn of a disclosure whose instrument forbids it."""
        hide = own and self.disclosures is not None and self.disclosures.withheld(subject_id)
        return [
            for_subject(event, subject_id)
            for event in self.audit.events(subject_id=subject_id, limit=limit)
            if not (hide and event["action"] == "disclose")
        ]

    def _export_data(self, subject_id: str, *, own: bool, legal: bool = False) -> dict[str, Any]:
        """``legal``: for legal_compliance, with the prior versions a legal floor keeps."""
        data = self.vault.export(subject_id, prior_versions=legal, allow_held=legal)
        data["consents"] = self.consents.of(subject_id)
        if self.decider.restrictions is not None:
            data["restrictions"] = self.decider.restrictions.of(subject_id)
        if self.disclosures is not None:
            data["disclosures"] = self.disclosures.of(subject_id, withheld_too=not own)
        if self.holds is not None and not own:  # a hold is the office's, not the subject's
            data["legal_holds"] = self.holds.of(subject_id)
        history = self._history(subject_id, 1000, own=own)
        data["transfers"] = [
            {
                "ts": event["ts"],
                "principal": event["principal"],
                "action": event["action"],
                "purpose": event["purpose"],
                **note,
            }
            for event in history
            for _, note in transfer_notes(event)
        ]
        data["recipients"] = recipients_of(history)
        data["access_history"] = history
        return data

    def export(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        justification: Justification | None = None,
    ) -> dict[str, Any]:
        """All of the subject's data, consents, restrictions, disclosures they may be told
        of, transfers and access history (policy §5)."""
        sid = self._exportable(caller, subject_id, purpose, justification)
        data = self._export_data(sid, own=purpose == SUBJECT_ACCESS, legal=purpose == LEGAL)
        if self.watch is not None:
            self.watch.exported(caller.principal, "export")  # bulk exports alert
        return data

    def disclose(
        self,
        caller: Caller,
        subject_id: str,
        *,
        authority: str,
        instrument: str,
        reference: str,
        justification: Justification | None,
        withhold_days: int = 0,
    ) -> dict[str, Any]:
        """Lawful disclosure to an authority (policy §2(2), §3(3)): the export for
        ``legal_compliance``, decided as ``disclose`` with the ticket and reason, audited
        before it is read and recorded (authority, instrument, reference) before it leaves."""
        if self.disclosures is None:
            raise Forbidden("disclosures are not kept here")
        self.disclosures.check(authority, instrument, reference, withhold_days)
        sid = self._exportable(caller, subject_id, LEGAL, justification, action="disclose")
        assert justification is not None  # the purpose demands one: decided above
        data = self._export_data(sid, own=False, legal=True)
        record = self.disclosures.record(
            sid,
            authority=authority,
            instrument=instrument,
            reference=reference,
            ticket=justification.ticket,
            withhold_days=withhold_days,
            actor=caller.principal,
        )
        detail = {k: record[k] for k in ("authority", "instrument", "reference", "withheld_until")}
        self.audit.append(completed(caller, "disclose", LEGAL, sid, detail, justification))
        data["disclosure"] = record
        if self.watch is not None:
            self.watch.exported(caller.principal, "disclose")
        return data

    def find(
        self, caller: Caller, purpose: str, field: str, value: Value, *, limit: int = 20
    ) -> list[SubjectView]:
        """Exact-match search (the blind index) by a searchable field or the external id:
        masked views only. Decided before the lookup — ``read_masked`` of the searched field
        (for the external id: of any field, as for tokenize) — and audited without the
        value; each subject shown is then decided and audited as a masked view."""
        searched = [field] if field != EXTERNAL_ID else sorted(self.decider.field_categories)
        decision = self.decider.decide(
            caller.principal, searched, "read_masked", purpose, None, None, gates=False
        )
        allowed = decision.allowed if field != EXTERNAL_ID else decision.permits
        if allowed and self.usage is not None:
            try:
                self.usage.search(caller.principal)  # charged before the lookup
            except Throttled as exc:
                self._record_refusal(caller, decision, None, exc)
                raise
        self.audit.append(
            decided(
                caller,
                decision,
                None,
                verdict="allow" if allowed else "deny",
                outcome={"search": {"field": field, "allowed": allowed}},
            )
        )
        if not allowed:
            raise Forbidden(f"searching by {field} for purpose {purpose} is not allowed")
        if field == EXTERNAL_ID:
            if not isinstance(value, str):
                raise ValidationError("invalid external id", {"external_id": "invalid"})
            try:
                ids = [self.vault.describe(external_id=value).subject_id]
            except SubjectNotFound:
                ids = []
        else:
            ids = self.vault.lookup(field, value)
        views: list[SubjectView] = []
        for subject_id in ids[:limit]:
            try:
                views.append(self.masked_view(caller, subject_id, purpose))
            except (Forbidden, SubjectNotFound):
                continue  # e.g. nothing of this subject is visible to the caller
        return views

    def access_history(
        self, caller: Caller, subject_id: str, purpose: str, *, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Who did what to this subject (the privacy office: decided as an export, which
        the history is part of), each event cut down to this subject."""
        sid = self._exportable(caller, subject_id, purpose)
        return self._history(sid, limit, own=purpose == SUBJECT_ACCESS)

    def consents_of(self, caller: Caller, subject_id: str, purpose: str) -> list[dict[str, Any]]:
        """A subject's consent history (the privacy office, as part of an export)."""
        return self.consents.of(self._exportable(caller, subject_id, purpose))

    def restrictions_of(
        self, caller: Caller, subject_id: str, purpose: str
    ) -> list[dict[str, Any]]:
        """A subject's restriction history (the privacy office, as part of an export)."""
        sid = self._exportable(caller, subject_id, purpose)
        restrictions = self.decider.restrictions
        return restrictions.of(sid) if restrictions is not None else []

    def own_reveals(self, caller: Caller, *, limit: int = 20) -> list[dict[str, Any]]:
        """The caller's own recent reveals (subject ids, fields, tickets: never values).
        One's own trail needs no right beyond being signed in."""
        return self.audit.events(principal=caller.principal, action="reveal", limit=limit)

    # -- deletion ------------------------------------------------------------------------

    def shred(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        justification: Justification | None = None,
    ) -> DeletionReceipt:
        """Crypto-shred; the decision is audited before, the completion after.

        A repeat of a finished shred returns its receipt and records the completion
        again, so a first attempt whose completion event failed converges on retry."""
        info = self._locate(caller, subject_id, ["shred"], purpose, active=False)
        facts = SubjectFacts(info.subject_id, info.is_minor, info.region)
        self._decide_and_record(caller, [WHOLE_SUBJECT], "shred", purpose, facts, justification)
        try:
            receipt = self.shredder.shred(info.subject_id)  # consents go via on_shredded
        except SubjectOnHold as exc:
            refused = {"refused": exc.code}
            self.audit.append(
                completed(caller, "shred", purpose, info.subject_id, refused, justification)
            )
            raise
        self.audit.append(
            completed(
                caller,
                "shred",
                purpose,
                info.subject_id,
                {"result": "shredded", "shredded_at": receipt.shredded_at},
                justification,
            )
        )
        self.shredder.completion_audited([info.subject_id])
        return receipt

    def hold(
        self,
        caller: Caller,
        subject_id: str,
        *,
        held: bool,
        reference: str,
        justification: Justification | None,
    ) -> list[dict[str, Any]]:
        """Place or lift a legal hold (policy §4): the privacy office, ``legal_compliance``
        with its ticket and reason, decided and audited first; returns the hold history."""
        if self.holds is None:
            raise Forbidden("legal holds are not kept here")
        facts = self._facts(caller, subject_id, "hold", LEGAL, [WHOLE_SUBJECT])
        self._decide_and_record(caller, [WHOLE_SUBJECT], "hold", LEGAL, facts, justification)
        recorded = self.holds.record(
            facts.subject_id, held=held, reference=reference, actor=caller.principal
        )
        self.audit.append(
            completed(caller, "hold", LEGAL, facts.subject_id, recorded, justification)
        )
        return self.holds.of(facts.subject_id)

    # -- break-glass (policy §2(2)) ----------------------------------------------------

    def open_break_glass(
        self, caller: Caller, justification: Justification | None, minutes: int | None = None
    ) -> Grant:
        """Open an emergency grant for the caller: decided (``break_glass`` for
        ``emergency``, a justification required), audited, the privacy office alerted."""
        if self.break_glass is None:
            raise Forbidden("break-glass is not available here")
        self._decide_and_record(
            caller, [WHOLE_SUBJECT], "break_glass", EMERGENCY, None, justification
        )
        assert justification is not None  # the purpose demands one: decided above
        grant = self.break_glass.open(
            caller.principal, justification.ticket, justification.reason, minutes
        )
        detail = {"opened": grant.id, "expires_at": grant.expires_at}
        self.audit.append(
            batch(
                caller,
                "break_glass",
                EMERGENCY,
                verdict="completed",
                subject_ids=[],
                fields=[],
                items={"*": detail},
                justification=justification,
            )
        )
        self.alerts.send("break_glass_opened", {**grant.as_dict(), "ticket": justification.ticket})
        return grant

    def close_expired_grants(self) -> int:
        """Maintenance: each break-glass grant past its end is audited and alerted as
        closed, once (whichever worker gets there first)."""
        if self.break_glass is None:
            return 0
        closed = 0
        for grant in self.break_glass.expired_unclosed():
            if not self.break_glass.mark_closed(grant.id):
                continue
            self.audit.append(
                batch(
                    Caller(grant.principal, "maintenance"),
                    "break_glass",
                    EMERGENCY,
                    verdict="completed",
                    subject_ids=[],
                    fields=[],
                    items={"*": {"closed": grant.id, "why": "expired", **grant.as_dict()}},
                    justification=None,
                )
            )
            self.alerts.send("break_glass_closed", {**grant.as_dict(), "why": "expired"})
            closed += 1
        return closed

    # -- audit -----------------------------------------------------------------------------

    def audit_events(
        self,
        caller: Caller,
        subject_id: str | None = None,
        limit: int = 100,
        **filters: str | None,
    ) -> list[dict[str, Any]]:
        """Events, newest first; ``filters``: principal, action, decision, since, until."""
        self._decide_and_record(caller, [WHOLE_SUBJECT], "audit_read", None, None, None)
        return self.audit.events(subject_id=subject_id, limit=limit, **filters)

    def audit_verify(self, caller: Caller) -> VerifyResult:
        self._decide_and_record(caller, [WHOLE_SUBJECT], "audit_read", None, None, None)
        return self.verified()

    def verified(self) -> VerifyResult:
        """Verify the chain; a failure is an alert (issue 20), whoever asked."""
        result = self.audit.verify()
        if not result.ok:
            self.alerts.send(
                "audit_verify_failed",
                {"first_bad_seq": result.first_bad_seq, "problem": result.problem or ""},
            )
        return result
