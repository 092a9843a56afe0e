"""Every data path, through one decision function and one audit log.

Order for each call: gather the facts a decision needs (no plaintext), decide,
commit the audit event (allow or deny, with the justification), and only then
touch data. If the audit event cannot be committed the call fails with
AuditUnavailable and nothing is read, written or returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from access.audit import AuditLog, AuditRecord, VerifyResult
from access.control import AccessControl, Decision, FieldDecision, SubjectFacts
from access.errors import ConsentRequired, Forbidden, JustificationRequired
from access.policy import WHOLE_SUBJECT
from access.purposes import Justification
from vault.errors import SubjectNotFound, SubjectShredded, ValidationError
from vault.receipts import DeletionReceipt
from vault.schema import Value
from vault.service import (
    STATUS_ACTIVE,
    CreatedSubject,
    DetokenizeResult,
    SubjectInfo,
    SubjectView,
    TokenizeRecord,
    TokenizeResult,
    VaultService,
)


@dataclass(frozen=True)
class Caller:
    """An authenticated principal and the request it is making."""

    principal: str
    request_id: str = "-"


class GuardedVault:
    def __init__(self, vault: VaultService, access: AccessControl, audit: AuditLog) -> None:
        self.vault = vault
        self.access = access
        self.audit = audit
        vault.shred_listeners.append(access.delete_consents)

    # -- plumbing ----------------------------------------------------------------------

    def _record(
        self,
        caller: Caller,
        decision: Decision,
        subject_ids: Sequence[str],
        justification: Justification | None,
        *,
        outcome: Mapping[str, Any] | None = None,
        verdict: str | None = None,
    ) -> int:
        return self.audit.append(
            AuditRecord(
                principal=caller.principal,
                action=decision.action,
                purpose=decision.purpose,
                decision=verdict or decision.summary,
                request_id=caller.request_id,
                subject_ids=list(dict.fromkeys(subject_ids)),
                fields=[f for f in decision.fields if f != WHOLE_SUBJECT],
                outcome=outcome
                if outcome is not None
                else {k: v.as_dict() for k, v in decision.fields.items()},
                justification=justification,
            )
        )

    @staticmethod
    def _refuse(decision: Decision) -> NoReturn:
        reason = decision.denial_reason()
        what = f"{decision.action} for purpose {decision.purpose or '-'}"
        if reason == "justification_required":
            raise JustificationRequired(
                f"{what} needs a justification: a ticket (e.g. CS-1234) and a reason"
            )
        if reason == "consent_required":
            raise ConsentRequired(f"{what} needs the subject's current consent")
        denied = sorted(f for f, d in decision.fields.items() if d.redaction == "denied")
        raise Forbidden(f"{what} is not allowed for {', '.join(denied)}")

    def _active(self, subject_id: str) -> SubjectInfo:
        info = self.vault.describe(subject_id)
        if info.status != STATUS_ACTIVE:
            raise SubjectShredded(f"subject is {info.status}")
        return info

    def _facts(self, subject_id: str) -> SubjectFacts:
        info = self._active(subject_id)
        return SubjectFacts(info.subject_id, info.is_minor)

    def _decide_and_record(
        self,
        caller: Caller,
        fields: Sequence[str],
        action: str,
        purpose: str | None,
        subject: SubjectFacts | None,
        justification: Justification | None,
    ) -> tuple[Decision, int]:
        decision = self.access.decide(
            caller.principal, fields, action, purpose, subject, justification
        )
        ids = [subject.subject_id] if subject else []
        seq = self._record(caller, decision, ids, justification)
        if not decision.allowed:
            self._refuse(decision)
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
        is_minor: bool = False,
        justification: Justification | None = None,
    ) -> CreatedSubject:
        self.vault.validate(fields, external_id=external_id, region=region)
        subject_id = str(uuid.uuid4())
        facts = SubjectFacts(subject_id, bool(is_minor))
        if fields:
            self._decide_and_record(caller, list(fields), "write", purpose, facts, justification)
        else:
            # An empty subject: allowed to whoever may write some field for this purpose.
            decision = self.access.decide(
                caller.principal,
                sorted(self.access.field_categories),
                "write",
                purpose,
                facts,
                justification,
            )
            may_write = any(d.redaction != "denied" for d in decision.fields.values())
            verdict = "allow" if may_write else "deny"
            outcome = {
                "*": {
                    "redaction": "plain" if may_write else "denied",
                    "reason": None if may_write else decision.denial_reason(),
                }
            }
            self._record(
                caller, decision, [subject_id], justification, outcome=outcome, verdict=verdict
            )
            if not may_write:
                self._refuse(decision)
        return self.vault.create_subject(
            fields,
            external_id=external_id,
            region=region,
            is_minor=is_minor,
            subject_id=subject_id,
        )

    def put_fields(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        fields: Mapping[str, Value],
        justification: Justification | None = None,
    ) -> dict[str, str]:
        self.vault.validate(fields, allow_empty=False)
        facts = self._facts(subject_id)
        self._decide_and_record(caller, list(fields), "write", purpose, facts, justification)
        return self.vault.put_fields(facts.subject_id, fields)

    def tokenize(
        self,
        caller: Caller,
        purpose: str,
        records: Sequence[TokenizeRecord],
        justification: Justification | None = None,
    ) -> list[TokenizeResult]:
        """Per record: decided on its own fields and subject; denied records store nothing."""
        self.access.purposes.get(purpose)
        results: list[TokenizeResult | None] = [None] * len(records)
        allowed: list[tuple[int, TokenizeRecord]] = []
        outcome: dict[str, Any] = {}
        subject_ids: list[str] = []
        names: list[str] = []
        for i, rec in enumerate(records):
            try:  # invalid records are answered before any decision, as single writes are
                self.vault.validate(
                    rec.fields, external_id=rec.external_id, region=rec.region, allow_empty=False
                )
            except ValidationError as exc:
                results[i] = TokenizeResult(error="invalid", errors=exc.errors)
                continue
            info = None
            try:
                if rec.subject_id is not None:
                    info = self.vault.describe(rec.subject_id)
                elif rec.external_id is not None:
                    info = self.vault.describe(external_id=rec.external_id)
            except SubjectNotFound:
                if rec.subject_id is not None:
                    results[i] = TokenizeResult(error="not_found")
                    continue
            if info is not None and info.status != STATUS_ACTIVE:
                results[i] = TokenizeResult(subject_id=info.subject_id, error="shredded")
                continue
            facts = SubjectFacts(
                info.subject_id if info else f"new:{i}",
                info.is_minor if info else bool(rec.is_minor),
            )
            decision = self.access.decide(
                caller.principal,
                list(rec.fields),  # validated non-empty above
                "write",
                purpose,
                facts,
                justification,
            )
            outcome[str(i)] = {k: v.as_dict() for k, v in decision.fields.items()}
            names.extend(decision.fields)
            if info:
                subject_ids.append(info.subject_id)
            if decision.allowed:
                allowed.append((i, rec))
            else:
                results[i] = TokenizeResult(error=decision.denial_reason() or "forbidden")
        verdict = "allow" if len(allowed) == len(records) else "deny" if not allowed else "partial"
        batch = Decision(
            caller.principal,
            "write",
            purpose,
            None,
            {n: FieldDecision(n, "plain", None, None) for n in dict.fromkeys(names)},
        )
        self._record(caller, batch, subject_ids, justification, outcome=outcome, verdict=verdict)
        if allowed:
            for (i, _), result in zip(
                allowed, self.vault.tokenize([r for _, r in allowed]), strict=True
            ):
                results[i] = result
        return [r if r is not None else TokenizeResult(error="forbidden") for r in results]

    def set_consent(
        self,
        caller: Caller,
        subject_id: str,
        consent_purpose: str,
        *,
        granted: bool,
        given_by: str,
        policy_version: str | None = None,
    ) -> dict[str, Any]:
        """Record a consent; the writer's permission is checked against the consent's purpose."""
        facts = self._facts(subject_id)
        self._decide_and_record(
            caller, [WHOLE_SUBJECT], "consent_write", consent_purpose, facts, None
        )
        row = self.access.record_consent(
            facts.subject_id,
            consent_purpose,
            granted=granted,
            given_by=given_by,
            policy_version=policy_version,
        )
        return {
            "subject_id": row.subject_id,
            "purpose": row.purpose,
            "granted": row.granted,
            "given_by": row.given_by,
            "policy_version": row.policy_version,
            "recorded_at": row.recorded_at.isoformat(),
        }

    # -- reads ---------------------------------------------------------------------------

    def detokenize(
        self,
        caller: Caller,
        purpose: str,
        tokens: Sequence[str],
        justification: Justification | None = None,
    ) -> list[DetokenizeResult]:
        """Per token, in input order: plain, masked, or an error code."""
        self.access.purposes.get(purpose)  # even when no token resolves
        refs = self.vault.resolve_tokens(tokens)
        policy = self.access.policy()  # one revision check for the whole batch
        decided: dict[tuple[str, str], FieldDecision] = {}
        outcome: dict[str, Any] = {}
        for i, ref in enumerate(refs):
            if ref.error is not None or ref.subject_id is None or ref.field is None:
                outcome[str(i)] = {"error": ref.error}
                continue
            key = (ref.subject_id, ref.field)
            if key not in decided:
                decision = self.access.decide(
                    caller.principal,
                    [ref.field],
                    "detokenize",
                    purpose,
                    SubjectFacts(ref.subject_id, ref.is_minor),
                    justification,
                    policy=policy,
                )
                decided[key] = decision.fields[ref.field]
            outcome[str(i)] = {"field": ref.field, **decided[key].as_dict()}
        gate = next((d for d in decided.values() if d.reason == "justification_required"), None)
        summary = Decision(
            caller.principal,
            "detokenize",
            purpose,
            None,
            {f"{s}:{f}": d for (s, f), d in decided.items()},
        )
        self._record(
            caller,
            summary,
            [s for s, _ in decided],
            justification,
            outcome=outcome,
            verdict=summary.summary if decided else "deny",
        )
        if gate is not None:
            raise JustificationRequired(
                f"detokenize for purpose {purpose} needs a justification: a ticket and a reason"
            )
        verdicts = [
            decided.get((r.subject_id, r.field)) if r.subject_id and r.field else None for r in refs
        ]
        readable = [
            r.token
            for r, d in zip(refs, verdicts, strict=True)
            if d is not None and d.redaction != "denied"
        ]
        masked = {
            r.token
            for r, d in zip(refs, verdicts, strict=True)
            if d is not None and d.redaction == "masked"
        }
        values = {
            r.token: r for r in (self.vault.detokenize(readable, masked=masked) if readable else [])
        }
        out: list[DetokenizeResult] = []
        for ref, d in zip(refs, verdicts, strict=True):
            if ref.error is not None or d is None:
                out.append(DetokenizeResult(token=ref.token, field=ref.field, error=ref.error))
                continue
            if d.redaction == "denied":
                out.append(
                    DetokenizeResult(
                        token=ref.token, field=ref.field, error=d.reason or "forbidden"
                    )
                )
            else:
                out.append(values[ref.token])
        return out

    def masked_view(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        justification: Justification | None = None,
    ) -> SubjectView:
        """Masked values of the fields the caller may see; others are left out."""
        info = self._active(subject_id)
        facts = SubjectFacts(info.subject_id, info.is_minor)
        names = info.fields or sorted(self.access.field_categories)
        decision = self.access.decide(
            caller.principal, names, "read_masked", purpose, facts, justification
        )
        self._record(caller, decision, [info.subject_id], justification)
        visible = [n for n, d in decision.fields.items() if d.redaction != "denied"]
        if not visible:
            self._refuse(decision)
        return self.vault.masked_view(info.subject_id, [n for n in visible if n in info.fields])

    def reveal(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        fields: Sequence[str],
        justification: Justification | None = None,
    ) -> tuple[dict[str, Value], int]:
        """Plaintext of the named fields, all or nothing; returns the values and the audit seq."""
        unknown = [f for f in fields if f not in self.access.field_categories]
        if unknown or not fields:
            raise ValidationError(
                "invalid field list",
                {str(n)[:64]: "unknown_field" for n in unknown} or {"fields": "empty"},
            )
        facts = self._facts(subject_id)
        _, seq = self._decide_and_record(
            caller, list(fields), "reveal", purpose, facts, justification
        )
        return self.vault.reveal(facts.subject_id, fields), seq

    def export(self, caller: Caller, subject_id: str, purpose: str) -> dict[str, Any]:
        """All of the subject's data, consents and access history (policy §5)."""
        facts = self._facts(subject_id)
        self._decide_and_record(caller, [WHOLE_SUBJECT], "export", purpose, facts, None)
        data = self.vault.export(facts.subject_id)
        data["consents"] = self.access.consents(facts.subject_id)
        data["access_history"] = self.audit.events(subject_id=facts.subject_id, limit=1000)
        return data

    # -- deletion ------------------------------------------------------------------------

    def shred(
        self,
        caller: Caller,
        subject_id: str,
        purpose: str,
        justification: Justification | None = None,
    ) -> DeletionReceipt:
        """Crypto-shred; the decision is audited before, the completion after."""
        info = self.vault.describe(subject_id)
        facts = SubjectFacts(info.subject_id, info.is_minor)
        decision, _ = self._decide_and_record(
            caller, [WHOLE_SUBJECT], "shred", purpose, facts, justification
        )
        receipt = self.vault.shred(info.subject_id)  # consents go via shred_listeners
        self._record(
            caller,
            decision,
            [info.subject_id],
            justification,
            outcome={"*": {"result": "shredded", "shredded_at": receipt.shredded_at}},
            verdict="completed",
        )
        return receipt

    # -- audit -----------------------------------------------------------------------------

    def audit_events(
        self, caller: Caller, subject_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        self._decide_and_record(caller, [WHOLE_SUBJECT], "audit_read", None, None, None)
        return self.audit.events(subject_id=subject_id, limit=limit)

    def audit_verify(self, caller: Caller) -> VerifyResult:
        self._decide_and_record(caller, [WHOLE_SUBJECT], "audit_read", None, None, None)
        return self.audit.verify()
