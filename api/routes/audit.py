"""/v1/audit: events and chain verification (auditor role)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from api.context import caller, runtime
from api.models import AuditEventsResponse, AuditQuery, AuditVerifyResponse

bp = APIBlueprint(
    "audit",
    __name__,
    url_prefix="/v1/audit",
    abp_tags=[Tag(name="audit")],
    abp_security=[{"bearer": []}],
)


@bp.get("", responses={200: AuditEventsResponse})
def events(query: AuditQuery) -> dict[str, Any]:
    found = runtime().guard.audit_events(
        caller(),
        query.subject_id,
        query.limit,
        principal=query.principal,
        action=query.action,
        decision=query.decision,
        since=query.since,  # RFC 3339, checked and made UTC ISO by the model
        until=query.until,
        before=query.before,
    )
    more = len(found) == query.limit and found[-1]["seq"] > 1
    return {"events": found, "next_before": found[-1]["seq"] if more else None}


@bp.get("/verify", responses={200: AuditVerifyResponse})
def verify() -> dict[str, Any]:
    return asdict(runtime().guard.audit_verify(caller()))
