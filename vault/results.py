"""What the vault returns: value objects with no behaviour, and the vocabularies they use.

Kept apart from the service so callers (access, api) can name results without
depending on how they are produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Literal

from vault.schema import Value

SubjectStatus = Literal["active", "shredding", "shredded", "damaged", "held"]
# Why a batch item has no result. The vault itself answers the first three; the
# access layer adds the denial reasons (decisions are not the vault's business).
ItemError = Literal[
    "invalid",
    "not_found",
    "shredded",
    "subject_damaged",  # the subject's key is missing though it was never shredded
    "expired",  # past its retention period (policy §4): returned by no read
    "conflict",  # tokenize never changes a stored value: that is a correction (PATCH)
    "minor_flag_conflicts",  # a stated is_minor or a date of birth against the other (§6)
    "forbidden",
    "consent_required",
    "justification_required",
    "restricted",
    "guardian_consent_required",  # a minor's data without a guardian's consent (§6)
    "transfer_basis_required",  # across regions without a transfer basis in force (§7)
    "break_glass_required",  # the emergency purpose without an open break-glass grant
    "no_processing_agreement",  # a processor with no agreement on record (§3(1))
    "approval_required",  # four-eyes: a second person must approve (reveals only)
]
VaultItemError = Literal["invalid", "not_found", "shredded", "subject_damaged", "expired"]
ValueRedaction = Literal["plain", "masked"]


@dataclass(frozen=True)
class CreatedSubject:
    subject_id: str
    tokens: dict[str, str]


@dataclass(frozen=True)
class PreparedWrite:
    """Input validated and normalised once (``Vault.prepare``): what a write stores."""

    values: Mapping[str, bytes] = dc_field(repr=False)
    subject_id: str | None = None
    external_id: str | None = None
    region: str | None = None
    is_minor: bool = False
    # Fields the caller may read back (None: all). A stored value of any other field is a
    # ``conflict`` whether or not the new one equals it: no guess-confirming oracle (issue 17).
    readable: frozenset[str] | None = None


@dataclass(frozen=True)
class TokenizeRecord:
    """One raw tokenize item: which subject (by id or external id) and its field values."""

    fields: Mapping[str, Value] = dc_field(repr=False)
    subject_id: str | None = None
    external_id: str | None = None
    region: str | None = None
    is_minor: bool | None = None  # not stated: the date of birth decides, else not a minor


@dataclass(frozen=True)
class TokenizeResult:
    subject_id: str | None = None
    tokens: dict[str, str] | None = None
    error: ItemError | None = None
    errors: dict[str, str] | None = None


@dataclass(frozen=True)
class DetokenizeResult:
    token: str
    field: str | None = None
    subject_id: str | None = None
    value: Value | None = dc_field(default=None, repr=False)
    error: ItemError | None = None
    redaction: ValueRedaction | None = None  # set when a value is returned


@dataclass(frozen=True)
class TokenRef:
    """What a token points at, without decrypting anything (for access decisions)."""

    token: str
    subject_id: str | None = None
    field: str | None = None
    is_minor: bool = False
    error: VaultItemError | None = None
    region: str | None = None

    @property
    def names(self) -> tuple[str, str] | None:
        """(subject id, field) of a token that resolved to a live value, else None."""
        if self.error is None and self.subject_id is not None and self.field is not None:
            return self.subject_id, self.field
        return None


@dataclass(frozen=True)
class SubjectInfo:
    """Facts about a subject that access decisions need; no values."""

    subject_id: str
    status: SubjectStatus
    is_minor: bool
    fields: list[str]
    region: str | None = None


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
    is_minor: bool
    status: SubjectStatus
    fields: dict[str, FieldView]
