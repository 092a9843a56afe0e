"""The one batch pipeline: tokenize and detokenize, item by item, in input order.

The route hands over raw items (an item it could not even decode arrives as
``Undecodable``); here each item is validated once, decided on its own subject
and fields, the whole batch is audited as one event, and only allowed items
reach the vault. Every item ends with exactly one result: a missing one is a
bug (an assertion), never a silent placeholder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from access.audit import AuditLog, AuditRecord
from access.budget import LookupBudget
from access.consents import SubjectFacts
from access.decisions import Decider, Decision, FieldDecision, verdict_of
from access.errors import JustificationRequired, Throttled, TooManyFailedLookups
from access.events import Caller, batch
from access.purposes import Justification
from access.usage import UsageBudgets
from vault.errors import MinorFlagConflicts, SubjectNotFound, ValidationError
from vault.models import STATUS_ACTIVE
from vault.results import (
    DetokenizeResult,
    ItemError,
    PreparedWrite,
    SubjectInfo,
    TokenizeRecord,
    TokenizeResult,
    TokenRef,
)
from vault.service import VaultService


@dataclass(frozen=True)
class Undecodable:
    """An item the transport could not decode (e.g. bad base64): ``errors`` maps field -> code."""

    errors: Mapping[str, str] = field(default_factory=dict)


TokenizeItem = TokenizeRecord | Undecodable
T = TypeVar("T")


def _filled(results: Sequence[T | None]) -> list[T]:
    """Every slot holds a result: one missing is a bug, never something to paper over."""
    filled = [r for r in results if r is not None]
    assert len(filled) == len(results), "a batch item has no result"
    return filled


def _blind(d: FieldDecision) -> bool:
    """Refused by the policy itself (no rule gives this caller the field): the caller must not
    learn the token is real. Refusals a caller with rights can act on (consent, justification)
    are still named."""
    return not d.visible and d.reason in (None, "forbidden")


class BatchGuard:
    usage: UsageBudgets | None = None  # set by the guard (plaintext read budgets)

    def __init__(
        self,
        vault: VaultService,
        decider: Decider,
        audit: AuditLog,
        budget: LookupBudget | None = None,
    ) -> None:
        self.vault = vault
        self.decider = decider
        self.audit = audit
        self.budget = budget

    def _subject(
        self, write: PreparedWrite, known: dict[str, SubjectInfo] | None = None
    ) -> SubjectInfo | None:
        """The existing subject an item names, or None for one it would create. ``known``:
        the batch's external ids resolved up front (one blind-index call for all)."""
        if write.subject_id is not None:
            return self.vault.describe(write.subject_id)
        if known is not None and write.external_id is not None:
            return known.get(write.external_id)
        try:
            return self.vault.describe(external_id=write.external_id)
        except SubjectNotFound:
            return None

    def _may_see(self, caller: Caller, purpose: str) -> bool:
        """Whether the policy lets the caller read (masked or plain) any field for ``purpose``."""
        fields = sorted(self.decider.field_categories)
        return self.decider.decide(
            caller.principal, fields, "detokenize", purpose, None, None, gates=False
        ).permits

    def _may_write(self, caller: Caller, purpose: str, write: PreparedWrite) -> bool:
        fields = list(write.values)
        decision = self.decider.decide(
            caller.principal, fields, "write", purpose, None, None, gates=False
        )
        return not fields or decision.allowed

    def _readable(self, caller: Caller, purpose: str, write: PreparedWrite) -> frozenset[str]:
        decision = self.decider.decide(
            caller.principal, list(write.values), "detokenize", purpose, None, None, gates=False
        )
        return frozenset(f for f, d in decision.fields.items() if d.visible)

    def tokenize(
        self,
        caller: Caller,
        purpose: str,
        items: Sequence[TokenizeItem],
        justification: Justification | None = None,
    ) -> list[TokenizeResult]:
        """Per item: decided on its own fields and subject; nothing stored unless allowed."""
        self.decider.purposes.get(purpose)  # an unknown purpose is a 400, whatever the items
        results: list[TokenizeResult | None] = [None] * len(items)
        allowed: list[tuple[int, PreparedWrite]] = []
        outcome: dict[str, Any] = {}
        subject_ids: list[str] = []
        names: list[str] = []
        sees: bool | None = None  # may the caller see subjects for this purpose? (lazily)
        known: dict[str, SubjectInfo] | None = None  # the batch's external ids, resolved once
        pending: list[tuple[int, PreparedWrite, SubjectInfo | None, SubjectFacts]] = []
        for i, item in enumerate(items):
            try:
                if isinstance(item, Undecodable):
                    raise ValidationError("invalid fields; nothing was stored", item.errors)
                write = self.vault.validator.prepare_record(item)
                if write.subject_id is None:
                    # An external id resolves to a subject id only for a caller who may see
                    # subjects for this purpose; anyone else gets the same answer whether or
                    # not the external id exists (no existence oracle), and nothing is stored.
                    if sees is None:
                        sees = self._may_see(caller, purpose)
                    if not sees:
                        results[i] = TokenizeResult(error="forbidden")
                        outcome[str(i)] = {"error": "forbidden", "reason": "cannot_see_subjects"}
                        continue
                    if known is None:
                        known = self.vault.describe_external(
                            [
                                r.external_id
                                for r in items
                                if isinstance(r, TokenizeRecord)
                                and r.subject_id is None
                                and r.external_id is not None
                            ]
                        )
                elif not self._may_write(caller, purpose, write):
                    # Decided before the lookup (issue 17): one answer for a live, erased or
                    # unknown subject to a caller the policy gives no write on these fields.
                    results[i] = TokenizeResult(error="forbidden")
                    outcome[str(i)] = {"error": "forbidden", "reason": "decided_before_lookup"}
                    continue
                info = self._subject(write, known)
            except ValidationError as exc:
                code: ItemError = (
                    "minor_flag_conflicts" if isinstance(exc, MinorFlagConflicts) else "invalid"
                )
                results[i] = TokenizeResult(error=code, errors=exc.errors)
                outcome[str(i)] = {"error": code}
                continue
            except SubjectNotFound:
                results[i] = TokenizeResult(error="not_found")
                outcome[str(i)] = {"error": "not_found"}
                continue
            if info is not None and info.status != STATUS_ACTIVE:
                results[i] = TokenizeResult(subject_id=info.subject_id, error="shredded")
                outcome[str(i)] = {"error": "shredded"}
                continue
            facts = SubjectFacts(
                info.subject_id if info else f"new:{i}",
                info.is_minor if info else write.is_minor,
                info.region if info else (write.region or self.vault.default_region),
            )
            pending.append((i, write, info, facts))
        # Every item decided at once: the policy once per distinct field, each condition
        # one query for the whole batch (not one per item).
        pairs = [(name, facts) for _, write, _, facts in pending for name in write.values]
        decided_fields = (
            self.decider.decide_each(
                caller.principal, pairs, "write", purpose, justification, region=caller.region
            )
            if pairs
            else []
        )
        at = 0
        for i, write, info, facts in pending:
            count = len(write.values)
            decision = Decision(
                caller.principal,
                "write",
                purpose,
                facts.subject_id,
                dict(zip(write.values, decided_fields[at : at + count], strict=True)),
            )
            at += count
            outcome[str(i)] = {
                "subject_id": info.subject_id if info is not None else None,
                "fields": {k: v.as_dict() for k, v in decision.fields.items()},
            }
            names.extend(decision.fields)
            if info is not None:
                subject_ids.append(info.subject_id)
            if decision.allowed:
                if info is not None:  # what it may read back decides retry vs conflict
                    write = dataclasses.replace(
                        write, readable=self._readable(caller, purpose, write)
                    )
                allowed.append((i, write))
            else:
                results[i] = TokenizeResult(error=decision.denial_reason() or "forbidden")
        self.audit.append(
            batch(
                caller,
                "write",
                purpose,
                verdict=verdict_of([r is None for r in results]),
                subject_ids=subject_ids,
                fields=names,
                items=outcome,
                justification=justification,
            )
        )
        if allowed:
            written = self.vault.tokenize([w for _, w in allowed])
            for (i, _), result in zip(allowed, written, strict=True):
                results[i] = result
        return _filled(results)

    def detokenize(
        self,
        caller: Caller,
        purpose: str,
        tokens: Sequence[str],
        justification: Justification | None = None,
    ) -> list[DetokenizeResult]:
        """Per token, in input order: plain, masked, or an error code.

        One snapshot for the whole request: budget, tokens (resolved once), policy
        revision and consents are read, every token decided, the event committed, and
        only then are the values read and decrypted, in the same snapshot. On PostgreSQL
        the subjects are share-locked from the first read, so a shred waits for the end.
        """
        self.decider.purposes.get(purpose)  # even when no token resolves
        with self.vault.keyed(read_only=True) as session:
            if self.budget is not None:
                try:
                    self.budget.check(caller.principal, session)
                except TooManyFailedLookups:
                    self._audit_budget_spent(caller, purpose, justification)
                    raise
            refs = self.vault.resolve_tokens(tokens, session, share_lock=True)
            verdicts = self._decide_tokens(caller, purpose, refs, justification, session)
            readable = [r for r, d in zip(refs, verdicts, strict=True) if d and d.visible]
            masked = {
                r.token
                for r, d in zip(refs, verdicts, strict=True)
                if d and d.redaction == "masked"
            }
            values = {
                r.token: r
                for r in (
                    self.vault.read_tokens(session, readable, masked=masked) if readable else []
                )
            }
        out: list[DetokenizeResult] = []
        for ref, d in zip(refs, verdicts, strict=True):
            # A token the caller gets no value for names no field either.
            if ref.error is not None or d is None:
                out.append(DetokenizeResult(token=ref.token, error=ref.error))
            elif _blind(d):  # no right to the field: a real token looks like a made-up one
                out.append(DetokenizeResult(token=ref.token, error="not_found"))
            elif not d.visible:
                out.append(DetokenizeResult(token=ref.token, error=d.reason or "forbidden"))
            else:
                out.append(values[ref.token])
        return out

    def _audit_budget_spent(
        self, caller: Caller, purpose: str, justification: Justification | None
    ) -> None:
        """The refusal of a detokenize whose failed-lookup budget is spent (before or at
        its charge): one event shape for both."""
        self.audit.append(
            batch(
                caller,
                "detokenize",
                purpose,
                verdict="deny",
                subject_ids=[],
                fields=[],
                items={"*": {"reason": "failed_lookup_budget_spent"}},
                justification=justification,
            )
        )

    def _decide_tokens(
        self,
        caller: Caller,
        purpose: str,
        refs: Sequence[TokenRef],
        justification: Justification | None,
        session: Session,
    ) -> list[FieldDecision | None]:
        """Each resolved token decided on its own subject and field, the batch audited as
        one event (committed before anything is read); None for a token that names nothing."""
        policy = self.decider.policy.current(session)
        pairs = list(
            dict.fromkeys((*r.names, r.is_minor, r.region) for r in refs if r.names is not None)
        )
        decided = dict(
            zip(
                [(s, f) for s, f, _, _ in pairs],
                self.decider.decide_each(
                    caller.principal,
                    [(f, SubjectFacts(s, minor, region)) for s, f, minor, region in pairs],
                    "detokenize",
                    purpose,
                    justification,
                    policy=policy,
                    session=session,
                    region=caller.region,
                ),
                strict=True,
            )
        )
        outcome: dict[str, Any] = {}
        verdicts: list[FieldDecision | None] = [
            decided.get(ref.names) if ref.names is not None else None for ref in refs
        ]
        if self.budget is not None:
            # Misses, and tokens the caller has no right to (answered as misses), charged
            # before anything is answered; spent already -> 429, nothing answered.
            misses = sum(1 for r, d in zip(refs, verdicts, strict=True) if d is None or _blind(d))
            try:
                self.budget.charge(caller.principal, misses)
            except TooManyFailedLookups:
                self._audit_budget_spent(caller, purpose, justification)
                raise
        plain = sum(1 for d in decided.values() if d.redaction == "plain")
        # The read budget is charged in the audit event's own transaction, before anything
        # is answered; spent -> its refusal is the event committed, 429, nothing answered.
        charge = (
            self.usage.read_charge(caller.principal, caller.roles, plain)
            if self.usage is not None
            else None
        )
        subject_ids, fields = [s for s, _ in decided], [f for _, f in decided]

        def refused(exc: Exception) -> AuditRecord:
            code = exc.code if isinstance(exc, Throttled) else "refused"
            return batch(
                caller,
                "detokenize",
                purpose,
                verdict="deny",
                subject_ids=subject_ids,
                fields=fields,
                items={"*": {"refused": code}},
                justification=justification,
            )

        for i, ref in enumerate(refs):
            d = verdicts[i]
            if d is None:
                outcome[str(i)] = {"error": ref.error}
            else:
                outcome[str(i)] = {"subject_id": ref.subject_id, "fields": {d.field: d.as_dict()}}
        self.audit.append(
            batch(
                caller,
                "detokenize",
                purpose,
                verdict=verdict_of([d.visible for d in decided.values()]),
                subject_ids=subject_ids,
                fields=fields,
                items=outcome,
                justification=justification,
            ),
            charge=charge,
            refused=refused,
        )
        if any(d.reason == "justification_required" for d in decided.values()):
            raise JustificationRequired(
                f"detokenize for purpose {purpose} needs a justification: a ticket and a reason"
            )
        return verdicts
