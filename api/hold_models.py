"""Request and response models of legal holds (policy §4; ``PUT /v1/subjects/{id}/hold``):
apart from ``api/models.py``, which is past its size; the document is generated from these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from api.models import Justification, Strict


class HoldBody(Strict):
    held: StrictBool = Field(description="true places a hold, false lifts the one in force")
    reference: str = Field(
        min_length=1, max_length=128, description="the case, order or matter the hold serves"
    )
    justification: Justification | None = None  # legal_compliance demands one


class HoldRecord(BaseModel):
    kind: Literal["hold", "lifted"]
    reference: str
    actor: str
    recorded_at: str


class HoldResponse(BaseModel):
    subject_id: str
    held: bool
    legal_holds: list[HoldRecord]
