"""Four-eyes in the console (issue 20): the approvals page — requests waiting for this
approver (who, subject, fields, ticket, reason; never a value), approve or reject each
after a fresh sign-in like a reveal — and one's own requests with their state. The
decisions are the API's (``access/approval_desk.py``); this page only shows them."""

from __future__ import annotations

from typing import Any

from flask import render_template

from api.console.auth import needs_step_up
from api.console.blueprint import bp, console_caller
from api.console.forms import SettleForm, SignOutForm
from api.context import approval_desk, runtime
from vault.errors import ValidationError


def _page(done: Any = None) -> Any:
    desk, caller = approval_desk(), console_caller()
    approver = desk.may_approve(caller)
    pending = desk.pending(caller) if approver else []
    forms = {a.id: SettleForm(prefix=f"a{a.id}") for a in pending}
    people = runtime().principals.profiles([a.requester for a in pending])
    return render_template(
        "console/approvals.html",
        approver=approver,
        pending=pending,
        forms=forms,
        people=people,
        mine=desk.mine(caller),
        done=done,
        signout=SignOutForm(prefix="signout"),
    )


@bp.get("/approvals")
def approvals() -> Any:
    return _page()


@bp.post("/approvals/<int:approval_id>")
@needs_step_up("console.approvals")
def settle(approval_id: int) -> Any:
    form = SettleForm(prefix=f"a{approval_id}")
    if not form.validate_on_submit() or not (form.approve.data or form.reject.data):
        raise ValidationError("invalid approval form", {"approval": "invalid"})
    done = approval_desk().settle(
        console_caller(),
        approval_id,
        approve=bool(form.approve.data),
        note=(form.note.data or "").strip() or None,
    )
    return _page(done)
