"""Auditors: the audit log with filters, verification, and charts of reveals and denials.

The charts are SVG drawn here (no script, no CDN): reveals per principal per day,
and denials per day, over the events the filter selects.
"""

from __future__ import annotations

import collections
from dataclasses import asdict
from typing import Any

from flask import render_template, request

from api.console.blueprint import bp, console_caller
from api.console.charts import bar_chart
from api.console.forms import AuditFilterForm, SignOutForm, VerifyForm
from api.context import runtime
from vault.errors import ValidationError


def _filters(form: AuditFilterForm) -> dict[str, str | None]:
    return {
        "principal": form.principal.data or None,
        "action": form.action.data or None,
        "decision": form.decision.data or None,
        "since": f"{form.since.data.isoformat()}T00:00:00" if form.since.data else None,
        "until": (
            f"{form.until.data.isoformat()}T23:59:59.999999+00:00" if form.until.data else None
        ),
    }


def _short(principal: str) -> str:
    """A chart label: people are user:<id>; the first 8 characters tell them apart."""
    kind, _, name = principal.partition(":")
    return f"{kind}:{name[:8]}…" if len(name) > 12 else principal


@bp.get("/audit")
def audit() -> Any:
    form = AuditFilterForm(request.args)
    invalid = bool(request.args) and not form.validate()  # e.g. a date of 2026-13-45
    filters = {} if invalid else _filters(form)
    events = (
        [] if invalid else runtime().guard.audit_events(console_caller(), None, 1000, **filters)
    )
    reveals: collections.Counter[tuple[str, str]] = collections.Counter()
    denials: collections.Counter[str] = collections.Counter()
    for event in events:
        day = str(event["ts"])[:10]
        if event["action"] == "reveal" and event["decision"] == "allow":
            reveals[(day, event["principal"])] += 1
        if event["decision"] in ("deny", "partial"):
            denials[day] += 1
    people = runtime().principals.profiles([str(e["principal"]) for e in events])

    def who(principal: str) -> str:
        name = people.get(principal, {}).get("name")
        return name[:24] if name else _short(principal)

    reveal_chart = bar_chart(
        "Reveals per person per day",
        [(f"{day} {who(p)}", n) for (day, p), n in sorted(reveals.items())],
    )
    denial_chart = bar_chart("Denials per day", sorted(denials.items()))
    return render_template(
        "console/audit.html",
        form=form,
        events=events[:200],
        people=people,
        total=len(events),
        reveal_chart=reveal_chart,
        denial_chart=denial_chart,
        verify_form=VerifyForm(),
        filter_errors=sorted(form.errors) if invalid else [],
        signout=SignOutForm(prefix="signout"),
    ), 400 if invalid else 200


@bp.post("/audit/verify")
def verify() -> Any:
    if not VerifyForm().validate_on_submit():
        raise ValidationError("invalid form", {"verify": "invalid"})
    result = runtime().guard.audit_verify(console_caller())
    return render_template(
        "console/verified.html",
        result=asdict(result),
        summary=result.summary(),
        signout=SignOutForm(prefix="signout"),
    )
