"""/v1/break-glass: open an emergency grant for oneself (policy §2(2); access/break_glass.py)."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from api.context import caller, runtime
from api.models import BreakGlassBody, BreakGlassResponse
from api.routes import justification_in

bp = APIBlueprint(
    "emergency",
    __name__,
    url_prefix="/v1/break-glass",
    abp_tags=[Tag(name="emergency")],
    abp_security=[{"bearer": []}],
)


@bp.post("", responses={201: BreakGlassResponse})
def open_grant(body: BreakGlassBody) -> tuple[dict[str, Any], int]:
    grant = runtime().guard.open_break_glass(
        caller(), justification_in(body.justification), body.minutes
    )
    return grant.as_dict(), 201
