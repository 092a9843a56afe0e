"""The privacy office: consents, restrictions and deactivation, access history, the
export download, and erasure.

Purpose ``subject_access_request`` (privacy policy §5). Erasure needs the subject
id typed back; it ends with the signed deletion receipt, its verification against
the vault's pinned key, and the receipt as a download.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Response, current_app, redirect, render_template, url_for

from api.console.auth import needs_step_up
from api.console.blueprint import bp, console_caller
from api.console.forms import (
    ConsentForm,
    EraseForm,
    ExportForm,
    LifecycleForm,
    RestrictionForm,
    SignOutForm,
    options,
)
from api.context import runtime
from vault.errors import ValidationError

PURPOSE = "subject_access_request"


def _consent_form() -> ConsentForm:
    form = ConsentForm(prefix="consent")
    decider = runtime().decider
    topics = [*decider.purposes.names]
    topics += [f"sensitive:{c}" for c in sorted(set(decider.field_categories.values()))]
    form.purpose.choices = options(*((p, p) for p in topics))
    return form


def _restriction_form() -> RestrictionForm:
    form = RestrictionForm(prefix="restriction")
    names = runtime().decider.purposes.names
    form.scope.choices = options(("*", "Every purpose"), *((p, p) for p in names))
    return form


@bp.get("/privacy/<subject_id>")
def privacy(subject_id: str) -> Any:
    guard, caller = runtime().guard, console_caller()
    view = guard.masked_view(caller, subject_id, PURPOSE)
    consents = guard.consents_of(caller, subject_id, PURPOSE)
    restrictions = guard.restrictions_of(caller, subject_id, PURPOSE)
    history = guard.access_history(caller, subject_id, PURPOSE)
    newest = {r["scope"]: r["kind"] for r in restrictions}
    return render_template(
        "console/privacy.html",
        view=view,
        consents=consents,
        restrictions=restrictions,
        deactivated=newest.get("*") == "deactivated",
        history=history,
        consent_form=_consent_form(),
        restriction_form=_restriction_form(),
        lifecycle_form=LifecycleForm(prefix="lifecycle"),
        export_form=ExportForm(prefix="export"),
        erase_form=EraseForm(prefix="erase"),
        signout=SignOutForm(prefix="signout"),
    )


@bp.post("/privacy/<subject_id>/consents")
@needs_step_up("console.privacy")
def record_consent(subject_id: str) -> Any:
    form = _consent_form()
    if not form.validate_on_submit():
        raise ValidationError("invalid consent form", {"consent": "invalid"})
    runtime().guard.set_consent(
        console_caller(),
        subject_id,
        str(form.purpose.data),
        granted=form.granted.data == "yes",
        given_by=str(form.given_by.data),
        guardian_ref=(form.guardian_ref.data or "").strip() or None,
        verification=form.verification.data or None,
    )
    return redirect(url_for("console.privacy", subject_id=subject_id))


@bp.post("/privacy/<subject_id>/restrictions")
@needs_step_up("console.privacy")
def record_restriction(subject_id: str) -> Any:
    form = _restriction_form()
    if not form.validate_on_submit():
        raise ValidationError("invalid restriction form", {"restriction": "invalid"})
    runtime().guard.restrict(
        console_caller(), subject_id, PURPOSE, str(form.scope.data), str(form.kind.data)
    )
    return redirect(url_for("console.privacy", subject_id=subject_id))


@bp.post("/privacy/<subject_id>/deactivate")
@needs_step_up("console.privacy")
def deactivate(subject_id: str) -> Any:
    """Service access ends now; the shred follows after the grace period (policy §5)."""
    return _lifecycle(subject_id, "deactivated")


@bp.post("/privacy/<subject_id>/reactivate")
@needs_step_up("console.privacy")
def reactivate(subject_id: str) -> Any:
    return _lifecycle(subject_id, "lifted")


def _lifecycle(subject_id: str, kind: str) -> Any:
    if not LifecycleForm(prefix="lifecycle").validate_on_submit():
        raise ValidationError("invalid form", {"lifecycle": "invalid"})
    runtime().guard.restrict(console_caller(), subject_id, PURPOSE, "*", kind)
    return redirect(url_for("console.privacy", subject_id=subject_id))


@bp.post("/privacy/<subject_id>/export")
@needs_step_up("console.privacy")
def export(subject_id: str) -> Any:
    if not ExportForm(prefix="export").validate_on_submit():
        raise ValidationError("invalid export form", {"export": "invalid"})
    data = runtime().guard.export(console_caller(), subject_id, PURPOSE)
    body = current_app.json.dumps(data, indent=2)  # as the API's export serialises it
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="export-{subject_id}.json"'},
    )


@bp.post("/privacy/<subject_id>/erase")
@needs_step_up("console.privacy")
def erase(subject_id: str) -> Any:
    form = EraseForm(prefix="erase")
    if not form.validate_on_submit() or not form.understood.data:
        raise ValidationError("confirm the erasure", {"confirm": "required"})
    if (form.confirm.data or "").strip().lower() != subject_id.lower():
        raise ValidationError("the typed id does not match this subject", {"confirm": "mismatch"})
    receipt = runtime().guard.shred(console_caller(), subject_id, PURPOSE).to_dict()
    verified = runtime().shredder.confirm(receipt)  # signature, published shred, key gone
    text = json.dumps(receipt, indent=2, sort_keys=True)
    return render_template(
        "console/receipt.html",
        receipt=text,
        verified=verified,
        download="data:application/json;base64," + base64.b64encode(text.encode()).decode(),
        subject_id=subject_id,
        signout=SignOutForm(prefix="signout"),
    )
