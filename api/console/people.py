"""Support agents: find a customer, see the masked record, reveal one field with a ticket.

A revealed value is only ever in the body of the POST that revealed it: never in
a URL, a title, a log line or a cache (``no-store``), and the page removes it
after the display window. Purpose: ``customer_support``.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request, session

from access.errors import ApprovalRequired, JustificationRequired
from access.purposes import Justification
from api.console.auth import needs_step_up
from api.console.blueprint import bp, console_caller, settings
from api.console.forms import RevealForm, SearchForm, SignOutForm
from api.context import runtime
from api.routes import value_out
from vault.errors import ValidationError

PURPOSE = "customer_support"


@bp.route("/search", methods=["GET", "POST"])
def search() -> Any:
    form = SearchForm()
    if request.method == "GET" and "support-agent" not in session.get("roles", []):
        form.purpose.data = "subject_access_request"  # a default only: decide() rules
    results = None
    if form.validate_on_submit():  # POST only: what is searched never enters a URL
        results = runtime().guard.find(
            console_caller(),
            str(form.purpose.data),
            str(form.kind.data),
            str(form.value.data).strip(),
        )
        form.value.data = ""  # not echoed back into the page
    return render_template(
        "console/search.html",
        form=form,
        results=results,
        signout=SignOutForm(prefix="signout"),
    )


@bp.get("/subjects/<subject_id>")
def subject(subject_id: str) -> Any:
    return _subject_page(subject_id)


def _subject_page(subject_id: str, errors: dict[str, str] | None = None) -> Any:
    """The customer record; ``errors``: a refused reveal's message, by field, shown on
    this page beside that field (issue 23: it replaced the page the agent was on)."""
    view = runtime().guard.masked_view(console_caller(), subject_id, PURPOSE)
    forms = {}
    for name in view.fields:
        form = RevealForm(prefix=name)
        form.field.data = name
        forms[name] = form
    return render_template(
        "console/subject.html",
        view=view,
        forms=forms,
        errors=errors or {},
        signout=SignOutForm(prefix="signout"),
        step_up_seconds=settings().step_up_seconds,
    ), 400 if errors else 200


@bp.post("/subjects/<subject_id>/reveal")
@needs_step_up("console.subject")
def reveal(subject_id: str) -> Any:
    field = request.form.get("field_name", "")
    form = RevealForm(prefix=field)
    if not form.validate_on_submit() or form.field.data != field:
        raise ValidationError("invalid reveal form", {"field": "invalid"})
    ticket, reason = (form.ticket.data or "").strip(), (form.reason.data or "").strip()
    justification = Justification(ticket, reason) if ticket or reason else None
    try:
        values, seq = runtime().guard.reveal(
            console_caller(), subject_id, PURPOSE, [field], justification
        )
    except JustificationRequired as exc:
        return _subject_page(subject_id, {field: str(exc)})
    except ApprovalRequired as exc:
        if exc.approval_id is None:
            raise
        return render_template(
            "console/approval_requested.html",
            subject_id=subject_id,
            field=field,
            approval_id=exc.approval_id,
            ticket=ticket,
            signout=SignOutForm(prefix="signout"),
        ), 202
    return render_template(
        "console/revealed.html",
        subject_id=subject_id,
        field=field,
        value=value_out(values[field]) or "",
        seconds=settings().reveal_seconds,
        seq=seq,
        signout=SignOutForm(prefix="signout"),
    )


@bp.get("/reveals")
def reveals() -> Any:
    events = runtime().guard.own_reveals(console_caller())
    return render_template(
        "console/reveals.html", events=events, signout=SignOutForm(prefix="signout")
    )
