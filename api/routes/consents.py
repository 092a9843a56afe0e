"""/v1/subjects/{id}/consents/{purpose}: record consent given or withdrawn."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from api.context import caller, runtime
from api.models import ConsentBody, ConsentPath, ConsentResponse

bp = APIBlueprint(
    "consents",
    __name__,
    url_prefix="/v1/subjects",
    abp_tags=[Tag(name="consents")],
    abp_security=[{"bearer": []}],
)


@bp.put("/<id>/consents/<purpose>", responses={200: ConsentResponse})
# ``purpose``: a purpose, sensitive:<category> or cross_border:<REGION> (access/consents.py)
def put_consent(path: ConsentPath, body: ConsentBody) -> dict[str, Any]:
    return runtime().guard.set_consent(
        caller(),
        path.id,
        path.purpose,
        granted=body.granted,
        given_by=body.given_by,
        policy_version=body.policy_version,
        guardian_ref=body.guardian_ref,
        verification=body.verification,
        channel=body.channel,
        text_sha256=body.text_sha256,
    )
