"""Request and response models of the transfer-basis registry (policy §7): its own module,
as its routes are (``api/routes/transfers.py``); the document is generated from these too."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.models import Strict


class TransferBasisBody(Strict):
    destination: str = Field(min_length=2, max_length=16)
    basis: Literal[
        "security_assessment",
        "standard_contract",
        "certification",
        "separate_consent",
        "contract_necessity",
        "legal_duty",
    ]
    reference: str = Field(min_length=1, max_length=128)
    purpose: str = Field(default="*", max_length=64)
    subject_id: str | None = Field(default=None, max_length=64)
    valid_from: dt.datetime | None = Field(default=None, strict=True)
    valid_until: dt.datetime | None = Field(default=None, strict=True)


class TransferBasisPath(BaseModel):
    id: int = Field(ge=1, le=2**31 - 1)  # a row id (PostgreSQL integer)


class TransferBasisResponse(BaseModel):
    id: int
    subject_id: str | None = None
    purpose: str
    destination: str
    basis: str
    reference: str
    valid_from: str
    valid_until: str | None = None
    revoked_at: str | None = None


class TransferBasesResponse(BaseModel):
    bases: list[TransferBasisResponse]


class TransferReportQuery(Strict):
    # An ISO date or date-time (UTC unless it names an offset); nothing lax such as a number.
    since: str = Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})?)?$",
        max_length=40,
    )


class TransferReportRow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_region: str = Field(alias="from")
    to: str
    purpose: str
    basis: str
    accesses: int
    subjects: int


class TransferReportResponse(BaseModel):
    since: str
    total: int
    transfers: list[TransferReportRow]
