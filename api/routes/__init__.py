"""Blueprints, one per resource, and the JSON <-> domain conversions they share."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from access.purposes import Justification
from api.models import Justification as JustificationModel
from vault.errors import ValidationError
from vault.schema import Schema, Value


def fields_in(fields: Mapping[str, str], schema: Schema) -> dict[str, Value]:
    """JSON values to domain values: binary fields arrive base64-encoded."""
    out: dict[str, Value] = {}
    bad: dict[str, str] = {}
    for name, value in fields.items():
        if name in schema and schema[name].type == "binary":
            try:
                out[name] = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, ValueError, UnicodeEncodeError):
                bad[name] = "not_base64"
        else:
            out[name] = value
    if bad:
        raise ValidationError("invalid fields; nothing was stored", bad)
    return out


def value_out(value: Value | None) -> str | None:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def justification_in(model: JustificationModel | None) -> Justification | None:
    return Justification(model.ticket, model.reason) if model is not None else None
