"""The OpenAPI document's finishing (issue 23): operation ids and summaries chosen by hand,
the error responses each operation can really give, and enumerations where the API takes
a closed set (purposes, fields and item error codes: this deployment's own, so a custom
schema or purposes file shows in the document).

flask-openapi3 generated ids like ``subjects_shred__id__delete``, no summaries, the same
400-503 list on every operation and plain strings for purposes and fields. The routes
keep their request and response models (which generate the schemas); what only a person
can choose is here, in one table, which a test holds to every route.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from api.models import Problem

# (method, path) -> (operationId, summary)
OPERATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("post", "/v1/subjects"): ("createSubject", "Create a subject and tokenize its fields"),
    ("patch", "/v1/subjects/{id}/fields"): ("writeFields", "Add or correct fields of a subject"),
    ("patch", "/v1/subjects/{id}/attributes"): (
        "setAttributes",
        "Change a subject's minor status or region",
    ),
    ("put", "/v1/subjects/{id}/restrictions"): (
        "recordRestriction",
        "Record a restriction, an objection or its lifting",
    ),
    ("post", "/v1/subjects/{id}/deactivate"): (
        "deactivateSubject",
        "Deactivate an account (shredded after the grace period)",
    ),
    ("post", "/v1/subjects/{id}/reactivate"): (
        "reactivateSubject",
        "Reactivate an account within the grace period",
    ),
    ("post", "/v1/tokenize"): ("tokenizeBatch", "Create subjects in a batch"),
    ("post", "/v1/detokenize"): ("detokenize", "Resolve tokens to values, item by item"),
    ("get", "/v1/subjects/{id}"): ("getSubject", "A subject's masked view"),
    ("post", "/v1/subjects/{id}/reveal"): ("revealFields", "Reveal fields with a justification"),
    ("post", "/v1/subjects/{id}/match"): (
        "matchBiometric",
        "Compare a presented template with the stored one",
    ),
    ("get", "/v1/subjects/{id}/export"): ("exportSubject", "Export everything held on a subject"),
    ("post", "/v1/subjects/{id}/disclosures"): (
        "discloseSubject",
        "A lawful disclosure to a named authority",
    ),
    ("delete", "/v1/subjects/{id}"): ("shredSubject", "Crypto-shred a subject, with a receipt"),
    ("put", "/v1/subjects/{id}/hold"): ("setLegalHold", "Place or lift a legal hold"),
    ("put", "/v1/subjects/{id}/consents/{purpose}"): (
        "recordConsent",
        "Record a consent or its withdrawal",
    ),
    ("post", "/v1/break-glass"): ("breakGlass", "Open a time-boxed emergency grant"),
    ("get", "/v1/approvals"): ("listApprovals", "Four-eyes requests waiting or decided"),
    ("get", "/v1/approvals/{id}"): ("getApproval", "One four-eyes request"),
    ("post", "/v1/approvals/{id}/approve"): ("approveReveal", "Approve another person's reveal"),
    ("post", "/v1/approvals/{id}/reject"): ("rejectReveal", "Reject another person's reveal"),
    ("get", "/v1/transfers"): ("listTransferBases", "Cross-border transfer bases"),
    ("post", "/v1/transfers"): ("createTransferBasis", "Record a cross-border transfer basis"),
    ("post", "/v1/transfers/{id}/revoke"): ("revokeTransferBasis", "Revoke a transfer basis"),
    ("get", "/v1/transfers/report"): ("transferReport", "Transfers by destination and basis"),
    ("get", "/v1/audit"): ("listAuditEvents", "Audit events, filtered, newest first"),
    ("get", "/v1/audit/verify"): ("verifyAuditLog", "Verify the audit chain and its anchors"),
    ("get", "/healthz"): ("health", "Liveness: the process answers"),
    ("get", "/readyz"): ("readiness", "Readiness: every dependency answers"),
}

_SUBJECT = "/v1/subjects/{id}"
_BUDGETED = {
    ("post", "/v1/detokenize"),
    ("post", "/v1/tokenize"),
    ("post", "/v1/subjects/{id}/reveal"),
    ("post", "/v1/subjects/{id}/match"),
    ("get", "/v1/subjects/{id}/export"),
    ("post", "/v1/subjects/{id}/disclosures"),
}
_CONFLICTS = {
    ("post", "/v1/subjects"),  # duplicate_external_id
    ("delete", "/v1/subjects/{id}"),  # legal_hold
    ("patch", "/v1/subjects/{id}/fields"),  # legal_hold (a held subject's values stay)
    ("put", "/v1/subjects/{id}/hold"),
    ("post", "/v1/approvals/{id}/approve"),  # approval_closed
    ("post", "/v1/approvals/{id}/reject"),
}


def error_statuses(method: str, path: str, has_body: bool) -> list[int]:
    """The statuses an operation can answer besides its success, by what it does."""
    statuses = {400, 401, 403, 503}
    if "{id}" in path:
        statuses.add(404)
    if path.startswith(_SUBJECT):
        statuses |= {410, 500}  # shredded; subject_damaged (its key lost, never shredded)
    if (method, path) in _CONFLICTS:
        statuses.add(409)
    if has_body:
        statuses |= {413, 415}
    if (method, path) in _BUDGETED:
        statuses.add(429)
    return sorted(statuses)


PURPOSE_MARK = "Purpose of processing (policy §2)"  # api/models.py ``Purpose``
# (not a tokenize record: there an unknown field is that item's error, not the request's)
_FIELD_MODELS = {"CreateSubjectBody", "PatchFieldsBody", "RevealBody"}


def _enums(schemas: dict[str, Any], purposes: list[str], fields: list[str]) -> None:
    """A request's purpose (the ``Purpose`` field: never a consent topic or ``*``) and its
    field names (values keyed by field, a list of fields, one field) as enumerations."""
    for name, schema in schemas.items():
        props = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(props, dict):
            continue
        purpose = props.get("purpose")
        if isinstance(purpose, dict) and purpose.get("description") == PURPOSE_MARK:
            purpose["enum"] = purposes
        if name in _FIELD_MODELS and isinstance(props.get("fields"), dict):
            target = props["fields"]
            if target.get("type") == "array" and isinstance(target.get("items"), dict):
                target["items"]["enum"] = fields
            elif target.get("type") == "object":
                target["propertyNames"] = {"enum": fields}
        if name == "MatchBody" and isinstance(props.get("field"), dict):
            props["field"]["enum"] = fields


def finish(doc: dict[str, Any], purposes: Iterable[str], fields: Iterable[str]) -> dict[str, Any]:
    """The served document: ids, summaries, per-operation Problem responses, enums."""
    doc = copy.deepcopy(doc)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            named = OPERATIONS.get((method, path))
            if named is not None:
                operation["operationId"], operation["summary"] = named
            responses = operation.setdefault("responses", {})
            if not path.startswith("/v1/"):
                continue
            for status in [s for s in list(responses) if s.isdigit() and int(s) >= 400]:
                del responses[status]  # flask-openapi3's generic ones: replaced below
            for status in error_statuses(method, path, "requestBody" in operation):
                responses[str(status)] = {
                    "description": HTTPStatus(status).phrase,
                    "content": problem,
                }
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema") or {}
                if parameter.get("in") == "query" and PURPOSE_MARK in (
                    schema.get("description"),
                    parameter.get("description"),
                ):
                    parameter["schema"] = {**schema, "enum": sorted(purposes)}
    _enums(schemas, sorted(purposes), sorted(fields))
    return doc
