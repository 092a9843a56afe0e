"""The audit-event builder: the one place that says what an event holds for each kind of call.

Every event names its principal, action, purpose, verdict, subjects and fields
(plain field names, never values) and an ``outcome``: keyed by field (or ``*``
for the whole subject) for a single-subject call; for a batch, keyed by item
index, each item ``{"subject_id", "fields": {field: decision}}`` or
``{"error"}``. ``for_subject`` cuts an event down to what concerns one subject
(a data-subject export must not carry other people).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from access.audit import AuditRecord
from access.decisions import Decision, Verdict
from access.policy import WHOLE_SUBJECT
from access.purposes import Justification
from vault.errors import SubjectNotFound
from vault.validation import canonical_subject_id


@dataclass(frozen=True)
class Caller:
    """An authenticated principal and the request it is making."""

    principal: str
    request_id: str = "-"
    region: str | None = None  # where the principal is (None: the deployment's region)
    roles: tuple[str, ...] = ()  # for budgets set by role (the decisions read the policy)


def _event(
    caller: Caller,
    action: str,
    purpose: str | None,
    verdict: Verdict,
    subject_ids: Sequence[str],
    fields: Sequence[str],
    outcome: Mapping[str, Any],
    justification: Justification | None,
) -> AuditRecord:
    return AuditRecord(
        principal=caller.principal,
        action=action,
        purpose=purpose,
        verdict=verdict,
        request_id=caller.request_id,
        subject_ids=list(dict.fromkeys(subject_ids)),
        fields=[f for f in dict.fromkeys(fields) if f != WHOLE_SUBJECT],
        outcome=dict(outcome),
        justification=justification,
    )


def decided(
    caller: Caller,
    decision: Decision,
    justification: Justification | None,
    *,
    verdict: Verdict | None = None,
    outcome: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """A single-subject decision, field by field as decided."""
    return _event(
        caller,
        decision.action,
        decision.purpose,
        verdict or decision.verdict,
        [decision.subject_id] if decision.subject_id else [],
        list(decision.fields),
        outcome if outcome is not None else {k: v.as_dict() for k, v in decision.fields.items()},
        justification,
    )


def batch(
    caller: Caller,
    action: str,
    purpose: str,
    *,
    verdict: Verdict,
    subject_ids: Sequence[str],
    fields: Sequence[str],
    items: Mapping[str, Any],
    justification: Justification | None,
) -> AuditRecord:
    """One event for a whole batch: ``items`` maps each item's index to its own outcome."""
    return _event(caller, action, purpose, verdict, subject_ids, fields, items, justification)


def audited_id(raw: str) -> str:
    """A caller-supplied subject id as the log may hold it: the canonical UUID, or
    ``invalid`` — never free text a caller typed into a URL (it could be anything)."""
    try:
        return canonical_subject_id(raw)
    except SubjectNotFound:
        return "invalid"


def probe(
    caller: Caller,
    action: str,
    purpose: str | None,
    subject_id: str,
    answer: str,
    justification: Justification | None,
) -> AuditRecord:
    """A request refused before the subject was touched: forbidden, not found or shredded."""
    return _event(
        caller,
        action,
        purpose,
        "deny",
        [audited_id(subject_id)],
        [],
        {"*": {"redaction": "denied", "reason": answer}},
        justification,
    )


def completed(
    caller: Caller,
    action: str,
    purpose: str | None,
    subject_id: str,
    result: Mapping[str, Any],
    justification: Justification | None,
) -> AuditRecord:
    """An action carried out after its decision was recorded (e.g. a shred finished)."""
    return _event(
        caller, action, purpose, "completed", [subject_id], [], {"*": dict(result)}, justification
    )


def operator(
    principal: str,
    action: str,
    subject_ids: Sequence[str],
    verdict: Verdict,
    detail: Mapping[str, str] | None = None,
) -> AuditRecord:
    """An operator command run with direct database and Vault access (the CLI)."""
    rule = {"*": {"rule": "operator CLI (direct database and Vault access)", **(detail or {})}}
    return _event(Caller(principal, "cli"), action, None, verdict, subject_ids, [], rule, None)


def grant_change(actor: str, action: str, detail: Mapping[str, str]) -> AuditRecord:
    """A change to who may do what (principals, roles, keys, policy rules): recorded in the
    chain before it is made, so the log shows every grant a decision could rest on."""
    rule = {"*": {"rule": "grant change", **detail}}
    return _event(Caller(actor, "grants"), action, None, "operator", [], [], rule, None)


def for_subject(event: Mapping[str, Any], subject_id: str) -> dict[str, Any]:
    """The event as the subject's own export may show it: nothing about anyone else.

    Other subjects' ids, their items and fields go; a justification stays only
    when the event concerns this subject alone (its free text may be about others).
    """
    out = dict(event)
    others = [s for s in event.get("subject_ids", []) if s != subject_id]
    out["subject_ids"] = [subject_id]
    outcome = event.get("outcome") or {}
    if any(key.isdigit() for key in outcome):  # a batch: keep this subject's items only
        mine = {
            key: item
            for key, item in outcome.items()
            if isinstance(item, Mapping) and item.get("subject_id") == subject_id
        }
        out["outcome"] = mine
        out["fields"] = sorted({f for item in mine.values() for f in item.get("fields", {})})
    else:
        out["fields"] = [f for f in event.get("fields", []) if ":" not in f]
    if others:
        out["justification"] = None
    return out
