"""/v1/transfers: the transfer-basis registry and its report (the privacy office, §7)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from api.context import caller, runtime
from api.transfer_models import (
    TransferBasesResponse,
    TransferBasisBody,
    TransferBasisPath,
    TransferBasisResponse,
    TransferReportQuery,
    TransferReportResponse,
)
from vault.errors import ValidationError

bp = APIBlueprint(
    "transfers",
    __name__,
    url_prefix="/v1/transfers",
    abp_tags=[Tag(name="transfers")],
    abp_security=[{"bearer": []}],
)


@bp.get("", responses={200: TransferBasesResponse})
def list_bases() -> dict[str, Any]:
    return {"bases": [b.as_dict() for b in runtime().transfer_desk.bases(caller())]}


@bp.post("", responses={201: TransferBasisResponse})
def add_basis(body: TransferBasisBody) -> tuple[dict[str, Any], int]:
    added = runtime().transfer_desk.add(caller(), **body.model_dump())
    return added.as_dict(), 201


@bp.post("/<int:id>/revoke", responses={200: TransferBasisResponse})
def revoke_basis(path: TransferBasisPath) -> dict[str, Any]:
    return runtime().transfer_desk.revoke(caller(), path.id).as_dict()


@bp.get("/report", responses={200: TransferReportResponse})
def transfer_report(query: TransferReportQuery) -> dict[str, Any]:
    try:
        since = dt.datetime.fromisoformat(query.since)
    except ValueError:
        raise ValidationError("invalid query", {"since": "not_a_date"}) from None
    since = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    stamp = since.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return runtime().transfer_desk.report(caller(), stamp)
