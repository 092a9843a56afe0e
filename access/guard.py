"""Every data path, through one decision function and one audit log.

Order for each call: gather the facts a decision needs (no plaintext), decide,
commit the audit event (allow or deny, with the justification), and only then
touch data. If the audit event cannot be committed the call fails with
AuditUnavailable and nothing is read, written or returned. Batches go through
``access.batch``, the privacy office's paths through ``access.office``, the shared
plumbing is ``access.guard_base``; event shapes come from ``access.events``.

Past 400 lines (about 500): the data paths (create, correct, masked view, reveal, match,
search, shred, break-glass, audit) stay in one class so that each visibly follows the same
order next to the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from access.audit import VerifyResult
from access.break_glass import Grant
from access.consents import SubjectFacts, as_record
from access.decisions import Decision
from access.errors import (
    ApprovalRequired,
    Forbidden,
    InvalidRequest,
    Throttled,
    TicketRejected,
    TicketSystemUnavailable,
)
from access.events import Caller, batch, completed, decided
from access.guard_base import EMERGENCY, refuse
from access.office import OfficeGuard
from access.policy import WHOLE_SUBJECT
from access.purposes import Justification
from vault.errors import SubjectNotFound, SubjectOnHold, ValidationError
from vault.new_subjects import EXTERNAL_ID
from vault.receipts import DeletionReceipt
from vault.results import CreatedSubject, SubjectView
from vault.schema import Value

__all__ = ["Caller", "GuardedVault"]


class GuardedVault(OfficeGuard):
    """The data paths; the privacy office's come from ``OfficeGuard``, ``tokenize`` and
    ``detokenize`` from ``BatchGuard``."""

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
                    refuse(decision)
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
                    refuse(consent_decision)
            if not may_write:
                refuse(decision)
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
                refuse(decision)
        return self.vault.put_fields(facts.subject_id, write)

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
            refuse(decision, name_fields=False)  # which fields it holds is not theirs to know
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
            if self.approvals is not None and (waiting := self.approvals.waiting(decision)):
                # four-eyes: file the request
                self._ticket_gate(caller, decision, justification)
                self.approvals.file(caller, facts.subject_id, purpose, waiting, justification)
            refuse(decision)
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
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """Events, newest first; ``filters``: principal, action, decision, since, until,
        before (a seq: the cursor)."""
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
