"""Request and response models of four-eyes approval (issue 20): its own module, as its
routes are (``api/routes/approvals.py``); the document is generated from these too."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.models import Strict


class ApprovalPath(BaseModel):
    id: int = Field(ge=1, le=2**31 - 1)  # a row id (PostgreSQL integer)


class ApprovalsQuery(Strict):
    view: Literal["pending", "mine"] = Field(
        default="pending",
        description="pending: requests waiting for you to decide; mine: your own requests",
    )


class SettleBody(Strict):
    note: str | None = Field(default=None, max_length=500)


class ApprovalResponse(BaseModel):
    id: int
    requester: str
    subject_id: str
    fields: list[str]
    purpose: str
    ticket: str
    reason: str
    status: Literal["pending", "approved", "rejected", "used", "expired"]
    requested_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    used_at: str | None = None
    expires_at: str


class ApprovalsResponse(BaseModel):
    approvals: list[ApprovalResponse]
