"""The one validation of write input: every value normalised once, before any key or row is touched.

Validation messages carry field names and reason codes, never the rejected value.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from vault.errors import MinorFlagConflicts, SubjectNotFound, ValidationError
from vault.formats import FieldValueError
from vault.minors import DATE_OF_BIRTH, Majority
from vault.results import PreparedWrite, TokenizeRecord
from vault.schema import Schema, Value

_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")
REGION = re.compile(r"^[A-Za-z0-9-]{2,16}$")


def canonical_subject_id(subject_id: str) -> str:
    """The UUID in canonical form; anything else names no subject."""
    try:
        return str(uuid.UUID(str(subject_id)))
    except ValueError:
        raise SubjectNotFound("unknown subject") from None


class Validator:
    def __init__(self, schema: Schema, majority: Majority | None = None) -> None:
        self.schema = schema
        self.majority = majority or Majority()

    def minor(self, values: Mapping[str, bytes], stated: bool | None) -> bool:
        """Minor status: the date of birth's when it is given (a stated flag must agree),
        else as stated (unknown: not a minor)."""
        if DATE_OF_BIRTH not in values:
            return bool(stated)
        derived = self.majority.minor(values[DATE_OF_BIRTH])
        if stated is not None and bool(stated) != derived:
            raise MinorFlagConflicts(
                f"is_minor={str(bool(stated)).lower()} contradicts the date of birth "
                f"(age of majority {self.majority.age_of_majority}); nothing was stored",
                {"is_minor": "conflicts_with_date_of_birth"},
            )
        return derived

    def prepare(
        self,
        fields: Mapping[str, Value],
        *,
        subject_id: str | None = None,
        external_id: str | None = None,
        region: str | None = None,
        is_minor: bool | None = None,
        allow_empty: bool = True,
    ) -> PreparedWrite:
        """Validate and normalise write input, or raise ValidationError naming every bad field."""
        if not isinstance(fields, Mapping):
            raise ValidationError("fields must be an object", {"fields": "not_an_object"})
        if not fields and not allow_empty:
            raise ValidationError("no fields given", {"fields": "empty"})
        errors: dict[str, str] = {}
        values: dict[str, bytes] = {}
        for name, value in fields.items():
            if name not in self.schema:
                errors[str(name)[:64]] = "unknown_field"
                continue
            try:
                values[name] = self.schema[name].normalize(value)
            except FieldValueError as exc:
                errors[name] = exc.reason
        if errors:
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
            raise ValidationError(f"invalid fields ({detail}); nothing was stored", errors)
        attrs: dict[str, str] = {}
        if external_id is not None and not _EXTERNAL_ID.fullmatch(str(external_id)):
            attrs["external_id"] = "invalid_format"
        if region is not None and not REGION.fullmatch(str(region)):
            attrs["region"] = "invalid_format"
        if attrs:
            raise ValidationError("invalid subject attributes; nothing was stored", attrs)
        return PreparedWrite(
            values,
            subject_id=canonical_subject_id(subject_id) if subject_id is not None else None,
            external_id=external_id,
            region=str(region).upper() if region is not None else None,
            is_minor=self.minor(values, is_minor),
        )

    def prepare_record(self, record: TokenizeRecord) -> PreparedWrite:
        """A tokenize item: non-empty fields and a subject id or an external id."""
        if record.subject_id is None and record.external_id is None:
            raise ValidationError("need subject_id or external_id", {"record": "no_subject"})
        return self.prepare(
            record.fields,
            subject_id=record.subject_id,
            external_id=record.external_id,
            region=record.region,
            is_minor=record.is_minor,
            allow_empty=False,
        )
