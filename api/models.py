"""Request and response models: they validate input and generate /v1/openapi.json.

Field names follow DESIGN.md's HTTP table exactly; clients code against them.
Binary field values (biometrics) travel as base64 strings.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from vault.results import ItemError as ItemCode

Purpose = Field(min_length=1, max_length=64, description="Purpose of processing (policy §2)")
FieldValues = dict[str, str]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Justification(Strict):
    ticket: str = Field(max_length=32, description="Ticket reference, e.g. CS-1234")
    reason: str = Field(max_length=500)


# -- path and query ------------------------------------------------------------------------


class SubjectPath(BaseModel):
    id: str = Field(max_length=64, description="Subject id (UUID)")


class ConsentPath(BaseModel):
    id: str = Field(max_length=64)
    purpose: str = Field(max_length=64)


class PurposeQuery(Strict):
    purpose: str = Purpose


class ExportQuery(Strict):
    purpose: str = Purpose
    # legal_compliance demands a justification (policy §2(2)): the ticket and reason.
    ticket: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=500)


def _rfc3339(text: str) -> str:
    """A real time (2026-13-45 matches the pattern, and is refused here), as UTC ISO."""
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


Rfc3339 = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$",
        json_schema_extra={"format": "date-time"},
    ),
    AfterValidator(_rfc3339),
]


class AuditQuery(Strict):
    """Filters (all optional, combined with and) and a cursor: events come newest first;
    ``before`` is the previous page's ``next_before``."""

    subject_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    principal: str | None = Field(default=None, pattern=r"^[A-Za-z0-9:._@-]{1,128}$")
    action: str | None = Field(default=None, pattern=r"^[a-z_]{1,32}$")
    decision: Literal["allow", "deny", "partial", "operator", "completed"] | None = None
    since: Rfc3339 | None = Field(default=None, description="Events at or after this time")
    until: Rfc3339 | None = Field(default=None, description="Events before this time")
    before: int | None = Field(
        default=None, ge=1, le=2**63 - 1, description="Events with a seq below this"
    )
    limit: int = Field(default=100, ge=1, le=1000)


# -- requests --------------------------------------------------------------------------------


class GivenConsent(Strict):
    """A consent given with a new subject (a guardian's for a minor, §6; the separate
    consent sensitive data needs): the same shape as the consent endpoint's, plus its topic."""

    purpose: str = Field(min_length=1, max_length=64)  # a purpose, sensitive:*, cross_border:*
    granted: StrictBool
    given_by: Literal["subject", "guardian"]
    policy_version: str | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}$")
    guardian_ref: str | None = Field(default=None, max_length=64)
    verification: str | None = Field(default=None, max_length=32)
    channel: str | None = Field(default=None, max_length=16)  # web, app, paper, ...
    text_sha256: str | None = Field(default=None, max_length=64)  # of the text shown


class CreateSubjectBody(Strict):
    external_id: str | None = Field(default=None, max_length=200)
    region: str | None = Field(default=None, max_length=16)
    # Not stated: derived from date_of_birth (policy §6); stated, it must agree with it.
    is_minor: StrictBool | None = None
    purpose: str = Purpose
    fields: FieldValues = Field(default_factory=dict, max_length=64)
    justification: Justification | None = None
    consents: list[GivenConsent] = Field(default_factory=list, max_length=32)


class PatchFieldsBody(Strict):
    purpose: str = Purpose
    fields: FieldValues = Field(min_length=1, max_length=64)
    justification: Justification | None = None


class AttributesBody(Strict):
    purpose: str = Purpose
    is_minor: StrictBool | None = None
    region: str | None = Field(default=None, max_length=16)
    justification: Justification | None = None


class RestrictionBody(Strict):
    purpose: str = Purpose  # the privacy office's own (subject_access_request)
    scope: str = Field(min_length=1, max_length=64)  # a purpose, or "*" for all
    kind: Literal["restriction", "objection", "lifted"]  # deactivation: its own routes
    justification: Justification | None = None


class LifecycleBody(Strict):
    purpose: str = Purpose  # the privacy office's own (subject_access_request)
    justification: Justification | None = None


class TokenizeRecordModel(Strict):
    external_id: str | None = Field(default=None, max_length=200)
    subject_id: str | None = Field(default=None, max_length=64)
    region: str | None = Field(default=None, max_length=16)
    is_minor: StrictBool | None = None  # as for a new subject
    fields: FieldValues = Field(min_length=1, max_length=64)


class TokenizeBody(Strict):
    purpose: str = Purpose
    records: list[TokenizeRecordModel] = Field(min_length=1, max_length=500)
    justification: Justification | None = None


class DetokenizeBody(Strict):
    purpose: str = Purpose
    tokens: list[str] = Field(min_length=1, max_length=1000)
    justification: Justification | None = None


class RevealBody(Strict):
    purpose: str = Purpose
    fields: list[str] = Field(min_length=1, max_length=64)
    justification: Justification | None = None


class MatchBody(Strict):
    """A presented biometric template (base64) to compare with the stored one."""

    purpose: str = Purpose
    field: str = Field(min_length=1, max_length=64)
    template: str = Field(min_length=1)  # base64; its size is the body limit's and the schema's
    justification: Justification | None = None


class DisclosureBody(Strict):
    """A lawful disclosure (policy §2(2), §3(3)): to whom, under which instrument."""

    authority: str = Field(min_length=1, max_length=200)
    instrument: Literal[
        "court_order", "warrant", "subpoena", "regulatory_request", "statutory_duty"
    ]
    reference: str = Field(min_length=1, max_length=200)
    justification: Justification
    # Days the subject may not be told (the instrument forbids it); 0: listed at once.
    withhold_days: int = Field(default=0, ge=0, le=3650)


class BreakGlassBody(Strict):
    """Open an emergency grant for oneself (policy §2(2)): why, and for how long."""

    justification: Justification
    minutes: int | None = Field(default=None, ge=1, le=24 * 60)


class BreakGlassResponse(BaseModel):
    grant: int
    principal: str
    opened_at: str
    expires_at: str


class DeleteBody(Strict):
    purpose: str = Purpose
    reason: str = Field(min_length=1, max_length=500)
    ticket: str | None = Field(default=None, max_length=32)


class ConsentBody(Strict):
    granted: StrictBool
    given_by: Literal["subject", "guardian"]
    policy_version: str | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}$")
    # A guardian's consent names the guardian (a reference) and how they were verified (§6).
    guardian_ref: str | None = Field(default=None, max_length=64)
    verification: str | None = Field(default=None, max_length=32)
    # Evidence (issue 20): how it was given and the SHA-256 of the policy text shown.
    channel: str | None = Field(default=None, max_length=16)
    text_sha256: str | None = Field(default=None, max_length=64)


# -- responses ---------------------------------------------------------------------------------


class ItemError(BaseModel):
    code: ItemCode = Field(description="Why this item has no result (an enumeration)")
    fields: dict[str, str] | None = None


class CreatedResponse(BaseModel):
    subject_id: str
    tokens: dict[str, str]


class AttributesResponse(BaseModel):
    subject_id: str
    is_minor: bool
    region: str | None = None


class RestrictionRecord(BaseModel):
    scope: str
    kind: str
    recorded_at: str | None = None


class RestrictionsResponse(BaseModel):
    subject_id: str
    restrictions: list[RestrictionRecord]


class TokensResponse(BaseModel):
    tokens: dict[str, str]


class TokenizeItem(BaseModel):
    subject_id: str | None = None
    tokens: dict[str, str] | None = None
    error: ItemError | None = None


class TokenizeResponse(BaseModel):
    results: list[TokenizeItem]


class DetokenizeItem(BaseModel):
    token: str
    field: str | None = None
    value: str | None = None
    redaction: Literal["plain", "masked"] | None = None
    error: ItemError | None = None


class DetokenizeResponse(BaseModel):
    results: list[DetokenizeItem]


class FieldViewModel(BaseModel):
    category: str
    masked: str
    token: str | None


class SubjectResponse(BaseModel):
    subject_id: str
    external_id: str | None
    region: str | None
    status: str
    fields: dict[str, FieldViewModel]


class MatchResponse(BaseModel):
    match: bool


class RevealResponse(BaseModel):
    values: dict[str, str]
    audit_seq: int


class ExportResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    subject_id: str
    status: str
    fields: dict[str, Any]
    consents: list[dict[str, Any]]
    access_history: list[dict[str, Any]]


class ReceiptModel(BaseModel):
    type: str
    version: int
    subject_id: str
    requested_at: str
    shredded_at: str
    key_provider: str
    subject_key_destroyed: bool
    data_deleted: bool
    held: dict[str, Any] | None = None  # what a legal retention floor kept (§4)
    signature: str
    public_key: str


class ShredResponse(BaseModel):
    status: Literal["shredded"]
    receipt: ReceiptModel


class ConsentResponse(BaseModel):
    subject_id: str
    purpose: str
    granted: bool
    given_by: str
    policy_version: str
    recorded_at: str
    guardian_ref: str | None = None
    verification: str | None = None
    channel: str | None = None
    text_sha256: str | None = None
    recorded_by: str | None = None


class AuditEventsResponse(BaseModel):
    events: list[dict[str, Any]]
    next_before: int | None = Field(
        default=None, description="Pass as ``before`` for the next (older) page; null: no more"
    )


class AuditVerifyResponse(BaseModel):
    ok: bool
    events: int
    head: str
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = None


class HealthResponse(BaseModel):
    status: str


class VaultClusterState(BaseModel):
    reason: str | None = Field(
        description="None when a create would work; else sealed, no leader, unreachable, ..."
    )
    breaker: str = Field(description="closed, open or half_open")
    nodes: dict[str, str] = Field(
        description="address -> active, standby, sealed, uninitialized, unreachable or error"
    )


class AuditSinkState(BaseModel):
    sink: str
    lag: int | None = Field(description="Committed events the sink has not taken yet")
    state: str = Field(description="ok, or down (this process's last attempt failed)")
    delivered: int = Field(description="The last sequence number the sink took")


class ReadyResponse(BaseModel):
    status: str
    database: str
    key_provider: str
    database_schema: str = Field(
        default="ok",
        description="ok; ahead (a newer version migrated it: ready, mid-upgrade); behind or "
        "missing (not ready: run `pii-vault init`); unknown (database unavailable)",
    )
    audit_anchors: str = Field(
        default="ok",
        description="ok; broken (the log does not extend its newest anchor: not ready); "
        "unchecked (this process has not learnt the newest anchor yet); unknown (no database)",
    )
    reasons: list[str] | None = Field(
        default=None, description="Why it is not ready, one line per cause"
    )
    vault_auth: str = Field(description="ok, failed (token renewal or login), or none")
    identity_provider: str = Field(
        default="none",
        description="The identity providers (the services' token issuer, the console's): "
        "ok, unavailable, or none (neither configured)",
    )
    vault: list[VaultClusterState] | None = Field(
        default=None, description="Per Vault cluster: the last background probe's findings"
    )
    audit_stream: list[AuditSinkState] | None = Field(
        default=None, description="Per audit sink: events behind, and whether it answered"
    )


class Problem(BaseModel):
    """RFC 9457 problem details; ``code`` is stable, ``detail`` is for people."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None
    errors: dict[str, str] | None = None
