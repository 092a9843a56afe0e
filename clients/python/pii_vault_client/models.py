"""What the vault answers, as typed values (the API's response models, without pydantic:
the client depends on an HTTP library only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ItemError:
    code: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreatedSubject:
    subject_id: str
    tokens: dict[str, str]


@dataclass(frozen=True)
class TokenizeResult:
    """One record's outcome: its subject and tokens, or ``error`` (the others still count)."""

    subject_id: str | None
    tokens: dict[str, str]
    error: ItemError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class DetokenizeResult:
    """One token's outcome: its value (``redaction`` plain or masked), or ``error``."""

    token: str
    field: str | None
    value: str | None = None
    redaction: str | None = None
    error: ItemError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class FieldView:
    category: str
    masked: str
    token: str | None


@dataclass(frozen=True)
class SubjectView:
    subject_id: str
    external_id: str | None
    region: str | None
    status: str
    fields: dict[str, FieldView]


@dataclass(frozen=True)
class Receipt:
    """A signed deletion receipt; ``raw`` is what the vault signed over (verify it with
    ``pii-vault`` or the public key)."""

    subject_id: str
    requested_at: str
    shredded_at: str
    subject_key_destroyed: bool
    data_deleted: bool
    signature: str
    public_key: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    events: int
    head: str
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = None


def item_error(raw: dict[str, Any] | None) -> ItemError | None:
    if not raw:
        return None
    return ItemError(str(raw.get("code", "error")), dict(raw.get("fields") or {}))
