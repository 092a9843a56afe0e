"""/v1/subjects: create, correct, masked view, reveal, biometric match, export, legal hold,
shred."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from access.purposes import Justification
from api.context import caller, runtime
from api.hold_models import HoldBody, HoldResponse
from api.models import (
    AttributesBody,
    AttributesResponse,
    CreatedResponse,
    CreateSubjectBody,
    DeleteBody,
    DisclosureBody,
    ExportQuery,
    ExportResponse,
    LifecycleBody,
    MatchBody,
    MatchResponse,
    PatchFieldsBody,
    PurposeQuery,
    RestrictionBody,
    RestrictionsResponse,
    RevealBody,
    RevealResponse,
    ShredResponse,
    SubjectPath,
    SubjectResponse,
    TokensResponse,
)
from api.routes import fields_in, justification_in, value_out
from vault.errors import ValidationError

bp = APIBlueprint(
    "subjects",
    __name__,
    url_prefix="/v1/subjects",
    abp_tags=[Tag(name="subjects")],
    abp_security=[{"bearer": []}],
)


@bp.post("", responses={201: CreatedResponse})
def create_subject(body: CreateSubjectBody) -> tuple[dict[str, Any], int]:
    rt = runtime()
    created = rt.guard.create_subject(
        caller(),
        body.purpose,
        fields_in(body.fields, rt.vault.schema),
        external_id=body.external_id,
        region=body.region,
        is_minor=body.is_minor,
        justification=justification_in(body.justification),
        consents=[c.model_dump() for c in body.consents],
    )
    return {"subject_id": created.subject_id, "tokens": created.tokens}, 201


@bp.patch("/<id>/fields", responses={200: TokensResponse})
def correct_fields(path: SubjectPath, body: PatchFieldsBody) -> dict[str, Any]:
    rt = runtime()
    tokens = rt.guard.put_fields(
        caller(),
        path.id,
        body.purpose,
        fields_in(body.fields, rt.vault.schema),
        justification_in(body.justification),
    )
    return {"tokens": tokens}


@bp.patch("/<id>/attributes", responses={200: AttributesResponse})
def change_attributes(path: SubjectPath, body: AttributesBody) -> dict[str, Any]:
    """The privacy office: a subject's minor status (policy §6) or region (§7), audited."""
    now = runtime().guard.change_attributes(
        caller(),
        path.id,
        body.purpose,
        is_minor=body.is_minor,
        region=body.region,
        justification=justification_in(body.justification),
    )
    return {"subject_id": now.subject_id, "is_minor": now.is_minor, "region": now.region}


@bp.put("/<id>/restrictions", responses={200: RestrictionsResponse})
def restrict(path: SubjectPath, body: RestrictionBody) -> dict[str, Any]:
    """The privacy office records a restriction, an objection (policy §5) or a lift."""
    history = runtime().guard.restrict(
        caller(),
        path.id,
        body.purpose,
        body.scope,
        body.kind,
        justification_in(body.justification),
    )
    return {"subject_id": path.id, "restrictions": history}


@bp.put("/<id>/hold", responses={200: HoldResponse})
def legal_hold(path: SubjectPath, body: HoldBody) -> dict[str, Any]:
    """The privacy office places or lifts a legal hold (policy §4): while held, no shred
    and no retention purge (409 ``legal_hold``)."""
    history = runtime().guard.hold(
        caller(),
        path.id,
        held=body.held,
        reference=body.reference,
        justification=justification_in(body.justification),
    )
    return {"subject_id": path.id, "held": history[-1]["kind"] == "hold", "legal_holds": history}


def _lifecycle(path: SubjectPath, body: LifecycleBody, kind: str) -> dict[str, Any]:
    history = runtime().guard.restrict(
        caller(), path.id, body.purpose, "*", kind, justification_in(body.justification)
    )
    return {"subject_id": path.id, "restrictions": history}


@bp.post("/<id>/deactivate", responses={200: RestrictionsResponse})
def deactivate(path: SubjectPath, body: LifecycleBody) -> dict[str, Any]:
    """Account deactivation (policy §5): service access ends now, the shred follows after
    the grace period unless the subject is reactivated."""
    return _lifecycle(path, body, "deactivated")


@bp.post("/<id>/reactivate", responses={200: RestrictionsResponse})
def reactivate(path: SubjectPath, body: LifecycleBody) -> dict[str, Any]:
    return _lifecycle(path, body, "lifted")


@bp.get("/<id>", responses={200: SubjectResponse})
def masked_view(path: SubjectPath, query: PurposeQuery) -> dict[str, Any]:
    view = runtime().guard.masked_view(caller(), path.id, query.purpose)
    return {
        "subject_id": view.subject_id,
        "external_id": view.external_id,
        "region": view.region,
        "status": view.status,
        "fields": {
            name: {"category": f.category, "masked": f.masked, "token": f.token}
            for name, f in view.fields.items()
        },
    }


@bp.post("/<id>/reveal", responses={200: RevealResponse})
def reveal(path: SubjectPath, body: RevealBody) -> dict[str, Any]:
    values, seq = runtime().guard.reveal(
        caller(), path.id, body.purpose, body.fields, justification_in(body.justification)
    )
    return {"values": {k: value_out(v) for k, v in values.items()}, "audit_seq": seq}


@bp.post("/<id>/match", responses={200: MatchResponse})
def match(path: SubjectPath, body: MatchBody) -> dict[str, Any]:
    """Biometrics' one use: match or no match, never a template (vault/biometrics.py)."""
    rt = runtime()
    if body.field not in rt.vault.schema or rt.vault.schema[body.field].category != "biometric":
        raise ValidationError("invalid field", {"field": "not_biometric"})
    presented = fields_in({body.field: body.template}, rt.vault.schema)[body.field]
    assert isinstance(presented, bytes)
    result = rt.guard.match(
        caller(),
        path.id,
        body.purpose,
        body.field,
        presented,
        justification_in(body.justification),
    )
    return {"match": result}


@bp.get("/<id>/export", responses={200: ExportResponse})
def export(path: SubjectPath, query: ExportQuery) -> dict[str, Any]:
    justification = (
        Justification(query.ticket or "", query.reason or "")
        if query.ticket is not None or query.reason is not None
        else None
    )
    return runtime().guard.export(caller(), path.id, query.purpose, justification)


@bp.post("/<id>/disclosures", responses={200: ExportResponse})
def disclose(path: SubjectPath, body: DisclosureBody) -> dict[str, Any]:
    """Lawful disclosure to an authority: the export for legal_compliance, recorded."""
    return runtime().guard.disclose(
        caller(),
        path.id,
        authority=body.authority,
        instrument=body.instrument,
        reference=body.reference,
        justification=justification_in(body.justification),
        withhold_days=body.withhold_days,
    )


@bp.delete("/<id>", responses={200: ShredResponse})
def shred(path: SubjectPath, body: DeleteBody) -> dict[str, Any]:
    # The reason is always audited, with the ticket when one is given.
    justification = Justification(body.ticket or "", body.reason)
    receipt = runtime().guard.shred(caller(), path.id, body.purpose, justification)
    return {"status": "shredded", "receipt": receipt.to_dict()}
