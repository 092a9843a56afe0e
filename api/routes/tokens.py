"""/v1/tokenize and /v1/detokenize: batch calls that answer per item, in input order."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from access.batch import TokenizeItem, Undecodable
from api.context import caller, runtime
from api.models import DetokenizeBody, DetokenizeResponse, TokenizeBody, TokenizeResponse
from api.routes import fields_in, justification_in, value_out
from vault.errors import ValidationError
from vault.results import TokenizeRecord, TokenizeResult

bp = APIBlueprint(
    "tokens",
    __name__,
    url_prefix="/v1",
    abp_tags=[Tag(name="tokens")],
    abp_security=[{"bearer": []}],
)


def _item(result: TokenizeResult) -> dict[str, Any]:
    if result.error is not None:
        return {
            "subject_id": result.subject_id,
            "error": {"code": result.error, "fields": result.errors},
        }
    return {"subject_id": result.subject_id, "tokens": result.tokens}


@bp.post("/tokenize", responses={200: TokenizeResponse})
def tokenize(body: TokenizeBody) -> dict[str, Any]:
    limit = current_app.config["PII_VAULT_MAX_BATCH"]
    if len(body.records) > limit:  # the deployment's own bound (PII_VAULT_MAX_BATCH)
        raise ValidationError("too many records", {"records": f"at most {limit}"})
    schema = runtime().vault.schema
    items: list[TokenizeItem] = []
    for rec in body.records:
        try:
            values = fields_in(rec.fields, schema)
        except ValidationError as exc:  # undecodable: the guard answers it, in its place
            items.append(Undecodable(exc.errors))
            continue
        items.append(
            TokenizeRecord(
                fields=values,
                subject_id=rec.subject_id,
                external_id=rec.external_id,
                region=rec.region,
                is_minor=rec.is_minor,
            )
        )
    results = runtime().guard.tokenize(
        caller(), body.purpose, items, justification_in(body.justification)
    )
    return {"results": [_item(r) for r in results]}


@bp.post("/detokenize", responses={200: DetokenizeResponse})
def detokenize(body: DetokenizeBody) -> dict[str, Any]:
    results = runtime().guard.detokenize(
        caller(), body.purpose, body.tokens, justification_in(body.justification)
    )
    out = []
    for r in results:
        if r.error is not None:
            out.append({"token": r.token, "field": r.field, "error": {"code": r.error}})
        else:
            out.append(
                {
                    "token": r.token,
                    "field": r.field,
                    "value": value_out(r.value),
                    "redaction": r.redaction,
                }
            )
    return {"results": out}
