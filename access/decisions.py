"""The one decision function every data path uses: policy, then the purpose's gates.

Vocabulary, one name per concept:
- a *redaction* is what one field gets: ``plain``, ``masked`` or ``denied``;
- a *reason* says why a field is denied;
- a *verdict* sums up a request for the audit log: ``allow``, ``deny`` or
  ``partial`` (plus ``completed`` and ``operator`` for events that record an
  action rather than a decision); the audit event stores it as ``decision``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from access.conditions import Condition, Item, Reason
from access.consents import Consents
from access.errors import InvalidRequest
from access.facts import Ask, SubjectFacts
from access.policy import NO_PURPOSE, PURPOSELESS, WHOLE_SUBJECT, Match, PolicyEngine
from access.policy_store import PolicyStore
from access.purposes import Justification, Purpose, Purposes, consent_topic
from access.restrictions import Restrictions

Redaction = Literal["plain", "masked", "denied"]
Verdict = Literal["allow", "deny", "partial", "completed", "operator"]
SUBJECT_WIDE_ACTIONS = (
    "export",
    "disclose",
    "shred",
    "consent_write",
    "attributes",
    "restrict",
    "hold",
    "break_glass",
    "transfers",
    "audit_read",
    "admin",
)
__all__ = ["Decider", "Decision", "FieldDecision", "Reason", "SubjectFacts", "verdict_of"]


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
    by: str | None = None  # the condition that refused it (None: the policy or justification)
    notes: Mapping[str, Mapping[str, str]] | None = None  # e.g. "transfer": from/to/basis

    @property
    def visible(self) -> bool:
        return self.redaction != "denied"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "redaction": self.redaction,
            "reason": self.reason,
            "rule": self.rule,
        }
        if self.by is not None:
            out["by"] = self.by
        if self.notes:
            out.update({k: dict(v) for k, v in self.notes.items()})
        return out


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
        """The first field's reason; an approval is asked for only when nothing else
        refuses (four-eyes waits for every other rule)."""
        reasons = [d.reason for d in self.fields.values() if not d.visible]
        return next((r for r in reasons if r != "approval_required"), None) or (
            reasons[0] if reasons else None
        )


# Told of every field decision made, per action (e.g. metrics): one call per request,
# not per field, so a 400-token batch costs its listeners one call.
DecisionListener = Callable[[str, Sequence[FieldDecision]], None]


class Decider:
    """Casbin's answer per field, the justification gate, then each condition in order
    (``access/conditions``): one path for single calls and batches."""

    def __init__(
        self,
        policy: PolicyStore,
        consents: Consents,
        field_categories: Mapping[str, str],
        purposes: Purposes,
        conditions: Sequence[Condition] = (),
        *,
        restrictions: Restrictions | None = None,
        sensitive_fields: Collection[str] = (),
    ) -> None:
        self.policy = policy
        self.consents = consents
        self.restrictions = restrictions
        self.conditions = list(conditions)
        self.field_categories = dict(field_categories)
        self.sensitive_fields = frozenset(sensitive_fields)
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
        region: str | None = None,
        session: Session | None = None,
    ) -> Decision:
        """Per field: ``plain``, ``masked`` or ``denied`` with a reason and the matched rule.

        Redaction: for ``detokenize``, plain if detokenize is allowed, else
        masked if read_masked is, else denied. Then the purpose's gates: a
        missing or malformed justification denies plaintext (masked stays
        visible); each condition may deny what is still visible. ``gates=False``
        evaluates the policy alone (``policy explain``, decisions before a lookup);
        ``policy`` reuses an engine already fetched for this request. A gated
        decision with no subject is judged as for a subject nobody knows anything
        about (no consent, no restriction): it fails closed.
        """
        purpose_spec = self._purpose(action, purpose)
        engine = policy if policy is not None else self.policy.current()
        decisions = self._evaluate(
            principal, fields, action, purpose_spec, justification, gates, engine
        )
        if gates and purpose_spec is not None:
            facts = subject if subject is not None else SubjectFacts("", False)
            names = list(decisions)
            gated = self._gate(
                Ask(principal, action, purpose_spec, region, engine.recipients.get(principal)),
                names,
                [decisions[n] for n in names],
                [facts] * len(names),
                session,
            )
            decisions = dict(zip(names, gated, strict=True))
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
        region: str | None = None,
    ) -> list[FieldDecision]:
        """One decision per (field, subject) item, exactly as ``decide`` would make each
        (gates included), for a batch: the policy is evaluated once per distinct field and
        each condition reads what it needs for every subject in one query (in ``session``)."""
        purpose_spec = self._purpose(action, purpose)
        fields = list(dict.fromkeys(f for f, _ in items))
        if not fields:
            return []
        engine = policy if policy is not None else self.policy.current()
        base = self._evaluate(principal, fields, action, purpose_spec, justification, True, engine)
        out = [base[f] for f, _ in items]
        if purpose_spec is not None:
            out = self._gate(
                Ask(principal, action, purpose_spec, region, engine.recipients.get(principal)),
                [f for f, _ in items],
                out,
                [s for _, s in items],
                session,
            )
        self._notify(action, out)
        return out

    def _gate(
        self,
        ask: Ask,
        fields: Sequence[str],
        decisions: list[FieldDecision],
        subjects: Sequence[SubjectFacts],
        session: Session | None,
    ) -> list[FieldDecision]:
        """Each condition that applies, in order, on the items still visible: the first
        refusal of an item stands (and names its condition); notes accumulate."""
        out = list(decisions)
        for condition in self.conditions:
            if not condition.applies(ask.action, ask.purpose):
                continue
            live = [i for i, d in enumerate(out) if d.visible]
            if not live:
                break
            items = [self._item(fields[i], subjects[i]) for i in live]
            for j, finding in condition.check(ask, items, session).items():
                i = live[j]
                d = out[i]
                if finding.reason is not None:
                    out[i] = dataclasses.replace(
                        d, redaction="denied", reason=finding.reason, by=condition.name
                    )
                elif finding.note:
                    notes = {**(d.notes or {}), condition.name: finding.note}
                    out[i] = dataclasses.replace(d, notes=notes)
        return out

    def _item(self, field: str, subject: SubjectFacts) -> Item:
        category = self.field_categories.get(field) if field != WHOLE_SUBJECT else None
        return Item(field, category, field in self.sensitive_fields, subject)

    def explain(self, action: str, purpose: str | None) -> list[tuple[str, str]]:
        """(condition, what it asks) for every condition that applies to such a request."""
        spec = self._purpose(action, purpose)
        if spec is None:
            return []
        return [
            (c.name, c.describe(action, spec)) for c in self.conditions if c.applies(action, spec)
        ]

    def _purpose(self, action: str, purpose: str | None) -> Purpose | None:
        if action in PURPOSELESS:
            return None
        if purpose is None:
            raise InvalidRequest("a purpose is required")
        if action == "consent_write":  # a consent's topic: a purpose, sensitive:*, ...
            return consent_topic(purpose, self.purposes, set(self.field_categories.values()))
        return self.purposes.get(purpose)

    def _evaluate(
        self,
        principal: str,
        fields: Sequence[str],
        action: str,
        purpose_spec: Purpose | None,
        justification: Justification | None,
        gates: bool,
        engine: PolicyEngine,
    ) -> dict[str, FieldDecision]:
        """The policy's answer per field, then the justification gate (subject-independent)."""
        request_purpose = NO_PURPOSE if purpose_spec is None else purpose_spec.name
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
