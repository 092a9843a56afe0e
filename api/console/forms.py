"""The console's forms (flask-wtf): every one carries the CSRF token, none autocompletes."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # stubs: < 3.3
from wtforms.validators import DataRequired, Length, Optional, Regexp

NO_AUTOFILL = {"autocomplete": "off", "spellcheck": "false"}


def options(*pairs: tuple[str, str]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


class SearchForm(FlaskForm):
    purpose = SelectField(
        "Purpose",
        choices=options(
            ("customer_support", "Customer support"),
            ("subject_access_request", "Subject access request (privacy office)"),
        ),
    )
    kind = SelectField(
        "Search by",
        choices=options(("email", "Email"), ("phone", "Phone"), ("external_id", "External id")),
    )
    value = StringField("Value", [DataRequired(), Length(max=200)], render_kw=NO_AUTOFILL)
    submit = SubmitField("Find customer")


class RevealForm(FlaskForm):
    """Ticket and reason are checked by the vault's policy (400 without them), not here:
    the console shows the vault's own answer."""

    field = HiddenField("Field", [DataRequired(), Length(max=64)])
    ticket = StringField("Ticket", [Optional(), Length(max=32)], render_kw=NO_AUTOFILL)
    reason = TextAreaField("Reason", [Optional(), Length(max=500)], render_kw=NO_AUTOFILL)
    submit = SubmitField("Reveal")


class ConsentForm(FlaskForm):
    purpose = SelectField("Purpose")
    granted = SelectField("Decision", choices=options(("yes", "Granted"), ("no", "Withdrawn")))
    given_by = SelectField(
        "Given by", choices=options(("subject", "Subject"), ("guardian", "Guardian"))
    )
    # A guardian's consent names the guardian and how they were verified (policy §6); the
    # vault checks both (400 without them), the console shows its answer.
    guardian_ref = StringField(
        "Guardian reference", [Optional(), Length(max=64)], render_kw=NO_AUTOFILL
    )
    verification = SelectField(
        "Guardian verified by",
        choices=options(
            ("", "(not a guardian)"),
            ("id_document", "ID document"),
            ("payment_card", "Payment card"),
            ("video_call", "Video call"),
            ("signed_form", "Signed form"),
            ("government_eid", "Government eID"),
        ),
    )
    submit = SubmitField("Record consent")


class RestrictionForm(FlaskForm):
    """A restriction or objection (or its lifting) the subject asked for (policy §5)."""

    scope = SelectField("Purpose")
    kind = SelectField(
        "Record",
        choices=options(
            ("restriction", "Restriction"), ("objection", "Objection"), ("lifted", "Lift")
        ),
    )
    submit = SubmitField("Record restriction")


class LifecycleForm(FlaskForm):
    """Account deactivation or reactivation (policy §5): one button each."""

    submit = SubmitField("Submit")


class ExportForm(FlaskForm):
    submit = SubmitField("Download export")


class EraseForm(FlaskForm):
    confirm = StringField(
        "Type the subject id to confirm", [DataRequired(), Length(max=64)], render_kw=NO_AUTOFILL
    )
    understood = BooleanField("I understand this destroys the subject's data for good")
    reason = StringField(
        "Reason (audited)", [DataRequired(), Length(max=500)], render_kw=NO_AUTOFILL
    )
    ticket = StringField("Ticket (optional)", [Optional(), Length(max=32)], render_kw=NO_AUTOFILL)
    submit = SubmitField("Erase subject")


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET filter changes nothing

    principal = StringField("Principal", [Optional(), Regexp(r"^[A-Za-z0-9:._@-]{1,128}$")])
    action = StringField("Action", [Optional(), Regexp(r"^[a-z_]{1,32}$")])
    decision = SelectField(
        "Decision",
        choices=options(("", "any"), ("allow", "allow"), ("deny", "deny"), ("partial", "partial")),
        validators=[Optional()],
    )
    since = DateField("From", [Optional()])  # <input type="date">: the browser's date picker
    until = DateField("Until", [Optional()])
    submit = SubmitField("Filter")


class VerifyForm(FlaskForm):
    submit = SubmitField("Verify the audit log")


class SignOutForm(FlaskForm):
    submit = SubmitField("Sign out")


class SettleForm(FlaskForm):
    """An approver's answer to a four-eyes request: approve or reject, with a note."""

    note = StringField("Note", [Optional(), Length(max=500)], render_kw=NO_AUTOFILL)
    approve = SubmitField("Approve")
    reject = SubmitField("Reject")
