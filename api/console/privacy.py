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

from access.purposes import Justification
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
    return _page(subject_id)


def _page(subject_id: str, erase_error: str | None = None) -> Any:
    """The privacy office's page; ``erase_error``: why an erasure was not done, shown in
    the erase section of this page (issue 23: it replaced the page)."""
    record = runtime().guard.privacy_record(console_caller(), subject_id, PURPOSE)
    newest = {r["scope"]: r["kind"] for r in record.restrictions}
    return render_template(
        "console/privacy.html",
        view=record.view,
        consents=record.consents,
        restrictions=record.restrictions,
        deactivated=newest.get("*") == "deactivated",
        history=record.history,
        consent_form=_consent_form(),
        restriction_form=_restriction_form(),
        lifecycle_form=LifecycleForm(prefix="lifecycle"),
        export_form=ExportForm(prefix="export"),
        erase_form=EraseForm(prefix="erase"),
        erase_error=erase_error,
        signout=SignOutForm(prefix="signout"),
    ), 400 if erase_error else 200


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
        missing = "a reason" if form.reason.errors else "the typed id and the confirmation"
        return _page(subject_id, f"Nothing was erased: give {missing}.")
    if (form.confirm.data or "").strip().lower() != subject_id.lower():
        return _page(subject_id, "Nothing was erased: the typed id does not match this subject.")
    justification = Justification((form.ticket.data or "").strip(), str(form.reason.data).strip())
    shredded = runtime().guard.shred(console_caller(), subject_id, PURPOSE, justification)
    receipt = shredded.to_dict()
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
