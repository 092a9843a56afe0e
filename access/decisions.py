"""The one decision function every data path uses: policy, then the purpose's gates.

Vocabulary, one name per concept:
- a *redaction* is what one field gets: ``plain``, ``masked`` or ``denied``;
- a *reason* says why a field is denied;
- a *verdict* sums up a request for the audit log: ``allow``, ``deny`` or
  ``partial`` (plus ``completed`` and ``operator`` for events that record an
  action rather than a decision); the audit event stores it as ``decision``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from access.consents import Consents, SubjectFacts
from access.errors import InvalidRequest
from access.policy import NO_PURPOSE, PURPOSELESS, WHOLE_SUBJECT, Match, PolicyEngine
from access.policy_store import PolicyStore
from access.purposes import Justification, Purpose, Purposes
from access.restrictions import Restrictions
from access.restrictions import applies as restriction_applies

Redaction = Literal["plain", "masked", "denied"]
Reason = Literal["forbidden", "consent_required", "justification_required", "restricted"]
Verdict = Literal["allow", "deny", "partial", "completed", "operator"]
SUBJECT_WIDE_ACTIONS = (
    "export",
    "shred",
    "consent_write",
    "attributes",
    "restrict",
    "audit_read",
    "admin",
)


def verdict_of(allowed: Sequence[bool]) -> Verdict:
    """``allow`` if every part is allowed, ``deny`` if none is (or none exists), else partial."""
    if allowed and all(allowed):
        return "allow"
    return "partial" if any(allowed) else "deny"


@dataclass(frozen=True)
class FieldDecision:
    field: str
    redaction: Redaction
    reason: Reason | None
    rule: str | None

    @property
    def visible(self) -> bool:
        return self.redaction != "denied"

    def as_dict(self) -> dict[str, str | None]:
        return {"redaction": self.redaction, "reason": self.reason, "rule": self.rule}


@dataclass(frozen=True)
class Decision:
    principal: str
    action: str
    purpose: str | None
    subject_id: str | None
    fields: dict[str, FieldDecision]

    @property
    def allowed(self) -> bool:
        """True when every field is plain or masked."""
        return bool(self.fields) and all(d.visible for d in self.fields.values())

    @property
    def permits(self) -> bool:
        """True when at least one field is plain or masked (the caller may do *something*)."""
        return any(d.visible for d in self.fields.values())

    @property
    def verdict(self) -> Verdict:
        return verdict_of([d.visible for d in self.fields.values()])

    def denial_reason(self) -> Reason | None:
        for d in self.fields.values():
            if not d.visible:
                return d.reason
        return None


# Told of every field decision made, per action (e.g. metrics): one call per request,
# not per field, so a 400-token batch costs its listeners one call.
DecisionListener = Callable[[str, Sequence[FieldDecision]], None]


class Decider:
    def __init__(
        self,
        policy: PolicyStore,
        consents: Consents,
        field_categories: Mapping[str, str],
        purposes: Purposes,
        restrictions: Restrictions | None = None,
    ) -> None:
        self.policy = policy
        self.consents = consents
        self.restrictions = restrictions
        self.field_categories = dict(field_categories)
        self.purposes = purposes
        self.listeners: list[DecisionListener] = []  # e.g. metrics

    def decide(
        self,
        principal: str,
        fields: Sequence[str],
        action: str,
        purpose: str | None,
        subject: SubjectFacts | None = None,
        justification: Justification | None = None,
        *,
        gates: bool = True,
        policy: PolicyEngine | None = None,
    ) -> Decision:
        """Per field: ``plain``, ``masked`` or ``denied`` with a reason and the matched rule.

        Redaction: for ``detokenize``, plain if detokenize is allowed, else
        masked if read_masked is, else denied. Then the purpose's gates: a
        missing or malformed justification denies plaintext (masked stays
        visible); missing consent denies everything. ``gates=False`` evaluates
        the policy alone (``policy explain``); ``policy`` reuses an engine
        already fetched for this request (one revision check per request).
        """
        purpose_spec = self._purpose(action, purpose)
        decisions = self._evaluate(
            principal, fields, action, purpose_spec, justification, gates, policy
        )
        if gates and _consent_gated(purpose_spec, action):
            assert purpose_spec is not None
            consented = subject is not None and self.consents.in_force(subject, purpose_spec.name)
            decisions = {k: _consent_gate(d, consented) for k, d in decisions.items()}
        if gates and subject is not None and self._restricted([subject], action, purpose):
            decisions = {k: _restriction_gate(d) for k, d in decisions.items()}
        self._notify(action, list(decisions.values()))
        return Decision(
            principal, action, purpose, subject.subject_id if subject else None, decisions
        )

    def decide_each(
        self,
        principal: str,
        items: Sequence[tuple[str, SubjectFacts]],
        action: str,
        purpose: str,
        justification: Justification | None = None,
        *,
        policy: PolicyEngine | None = None,
        session: Session | None = None,
    ) -> list[FieldDecision]:
        """One decision per (field, subject) item, exactly as ``decide`` would make each
        (gates included), for a batch: the policy is evaluated once per distinct field and
        the consents of every subject are read in one query (in ``session``)."""
        purpose_spec = self._purpose(action, purpose)
        fields = list(dict.fromkeys(f for f, _ in items))
        if not fields:
            return []
        base = self._evaluate(principal, fields, action, purpose_spec, justification, True, policy)
        if _consent_gated(purpose_spec, action):
            assert purpose_spec is not None
            consented = self.consents.in_force_for(
                [s for _, s in items], purpose_spec.name, session
            )
            out = [_consent_gate(base[f], s.subject_id in consented) for f, s in items]
        else:
            out = [base[f] for f, _ in items]
        restricted = self._restricted([s for _, s in items], action, purpose, session)
        if restricted:
            out = [
                _restriction_gate(d) if s.subject_id in restricted else d
                for d, (_, s) in zip(out, items, strict=True)
            ]
        self._notify(action, out)
        return out

    def _restricted(
        self,
        subjects: Sequence[SubjectFacts],
        action: str,
        purpose: str | None,
        session: Session | None = None,
    ) -> set[str]:
        """The subjects a restriction or objection in force refuses this for (policy §5)."""
        if self.restrictions is None or purpose is None or not restriction_applies(action, purpose):
            return set()
        ids = [s.subject_id for s in subjects if s.subject_id]
        return self.restrictions.restricted_for(ids, purpose, session)

    def _purpose(self, action: str, purpose: str | None) -> Purpose | None:
        if action in PURPOSELESS:
            return None
        if purpose is None:
            raise InvalidRequest("a purpose is required")
        return self.purposes.get(purpose)

    def _evaluate(
        self,
        principal: str,
        fields: Sequence[str],
        action: str,
        purpose_spec: Purpose | None,
        justification: Justification | None,
        gates: bool,
        policy: PolicyEngine | None,
    ) -> dict[str, FieldDecision]:
        """The policy's answer per field, then the justification gate (subject-independent)."""
        request_purpose = NO_PURPOSE if purpose_spec is None else purpose_spec.name
        engine = policy if policy is not None else self.policy.current()
        objects = [WHOLE_SUBJECT] if action in SUBJECT_WIDE_ACTIONS else list(fields)
        if not objects:
            raise InvalidRequest("no fields named")
        chain: list[tuple[str, Redaction]] = (
            [("detokenize", "plain"), ("read_masked", "masked")]
            if action == "detokenize"
            else [("read_masked", "masked")]
            if action == "read_masked"
            else [(action, "plain")]
        )
        decisions: dict[str, FieldDecision] = {}
        for obj in objects:
            if obj != WHOLE_SUBJECT and obj not in self.field_categories:
                decisions[obj] = FieldDecision(obj, "denied", "forbidden", None)
                continue
            deny_rule: str | None = None
            for act, redaction in chain:
                match: Match = engine.enforce(principal, obj, act, request_purpose)
                if match.allowed:
                    decisions[obj] = FieldDecision(obj, redaction, None, match.rule)
                    break
                deny_rule = deny_rule or match.rule
            else:
                decisions[obj] = FieldDecision(obj, "denied", "forbidden", deny_rule)
        if gates and purpose_spec is not None and action != "consent_write":
            # Justification guards plaintext (support sees masked records without one).
            unjustified = purpose_spec.requires_justification and not (
                justification is not None and justification.valid
            )
            if unjustified:
                decisions = {
                    k: FieldDecision(k, "denied", "justification_required", d.rule)
                    if d.redaction == "plain"
                    else d
                    for k, d in decisions.items()
                }
        return decisions

    def _notify(self, action: str, decisions: Sequence[FieldDecision]) -> None:
        for listener in self.listeners:
            listener(action, decisions)


def _consent_gated(purpose_spec: Purpose | None, action: str) -> bool:
    """Consent guards any processing for a consent-based purpose (recording consent aside)."""
    return purpose_spec is not None and purpose_spec.requires_consent and action != "consent_write"


def _restriction_gate(decision: FieldDecision) -> FieldDecision:
    if decision.visible:
        return FieldDecision(decision.field, "denied", "restricted", decision.rule)
    return decision


def _consent_gate(decision: FieldDecision, consented: bool) -> FieldDecision:
    if decision.visible and not consented:
        return FieldDecision(decision.field, "denied", "consent_required", decision.rule)
    return decision
