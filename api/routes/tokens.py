"""/v1/tokenize and /v1/detokenize: batch calls that answer per item, in input order."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from api.app import caller, runtime
from api.models import DetokenizeBody, DetokenizeResponse, TokenizeBody, TokenizeResponse
from api.routes import fields_in, justification_in, value_out
from vault.errors import ValidationError
from vault.service import TokenizeRecord, TokenizeResult

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
    rt = runtime()
    results: list[dict[str, Any] | None] = [None] * len(body.records)
    records: list[tuple[int, TokenizeRecord]] = []
    for i, rec in enumerate(body.records):
        try:
            values = fields_in(rec.fields, rt.vault.schema)
        except ValidationError as exc:
            results[i] = {"error": {"code": "invalid", "fields": exc.errors}}
            continue
        records.append(
            (
                i,
                TokenizeRecord(
                    fields=values,
                    subject_id=rec.subject_id,
                    external_id=rec.external_id,
                    region=rec.region,
                    is_minor=rec.is_minor,
                ),
            )
        )
    outcome = (
        rt.guard.tokenize(
            caller(), body.purpose, [r for _, r in records], justification_in(body.justification)
        )
        if records
        else []
    )
    for (i, _), result in zip(records, outcome, strict=True):
        results[i] = _item(result)
    return {"results": results}


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
