"""/v1/approvals: four-eyes approval of reveals (issue 20; access/approval_desk.py). A
reveal that needs one answers 403 ``approval_required`` with the request's id; an
approver lists, approves or rejects it here; the requester then repeats the reveal."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from api.approval_models import (
    ApprovalPath,
    ApprovalResponse,
    ApprovalsQuery,
    ApprovalsResponse,
    SettleBody,
)
from api.context import approval_desk, caller

bp = APIBlueprint(
    "approvals",
    __name__,
    url_prefix="/v1/approvals",
    abp_tags=[Tag(name="approvals")],
    abp_security=[{"bearer": []}],
)


@bp.get("", responses={200: ApprovalsResponse})
def list_approvals(query: ApprovalsQuery) -> dict[str, Any]:
    desk = approval_desk()
    listed = desk.mine(caller()) if query.view == "mine" else desk.pending(caller())
    return {"approvals": [a.as_dict() for a in listed]}


@bp.get("/<int:id>", responses={200: ApprovalResponse})
def show_approval(path: ApprovalPath) -> dict[str, Any]:
    return approval_desk().show(caller(), path.id).as_dict()


@bp.post("/<int:id>/approve", responses={200: ApprovalResponse})
def approve(path: ApprovalPath, body: SettleBody) -> dict[str, Any]:
    return approval_desk().settle(caller(), path.id, approve=True, note=body.note).as_dict()


@bp.post("/<int:id>/reject", responses={200: ApprovalResponse})
def reject(path: ApprovalPath, body: SettleBody) -> dict[str, Any]:
    return approval_desk().settle(caller(), path.id, approve=False, note=body.note).as_dict()
