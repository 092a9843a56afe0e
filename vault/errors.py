"""The vault error hierarchy. Only ``api/`` maps these to HTTP statuses.

Messages name fields, codes and ids, never values: they may end up in logs.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal

# The stable codes callers see (``api/`` maps each to an HTTP status).
VaultErrorCode = Literal[
    "error",
    "config",
    "invalid",
    "not_found",
    "shredded",
    "duplicate_external_id",
    "decryption_failed",
    "unavailable",
    "key_provider_unavailable",
    "database_unavailable",
    "shred_pending",
    "subject_damaged",
    "minor_flag_conflicts",
    "region_unavailable",
    "legal_hold",
]


class VaultError(Exception):
    """Base class for every error the vault service raises."""

    code: ClassVar[VaultErrorCode] = "error"


class ConfigError(VaultError):
    """Configuration is invalid; raised at start-up."""

    code: ClassVar[VaultErrorCode] = "config"


class SchemaNotReady(ConfigError):
    """The database schema is missing or older than this version: ``pii-vault init``."""


class ValidationError(VaultError):
    """Input was rejected; nothing was stored. ``errors`` maps field -> reason code."""

    code: ClassVar[VaultErrorCode] = "invalid"

    def __init__(self, message: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors: dict[str, str] = dict(errors or {})


class MinorFlagConflicts(ValidationError):
    """A stated ``is_minor`` contradicts the date of birth (policy §6); nothing was stored."""

    code: ClassVar[VaultErrorCode] = "minor_flag_conflicts"


class SubjectNotFound(VaultError):
    code: ClassVar[VaultErrorCode] = "not_found"


class SubjectShredded(VaultError):
    """The subject is shredded, or being shredded: no plaintext, ever."""

    code: ClassVar[VaultErrorCode] = "shredded"


class SubjectOnHold(VaultError):
    """A legal hold is in force (policy §4): no shred and no retention purge until lifted."""

    code: ClassVar[VaultErrorCode] = "legal_hold"


class SubjectDamaged(VaultError):
    """The subject's key is missing though it was never shredded: its data is lost.

    Reported as what it is (never as an erasure); `pii-vault reconcile` lists such
    subjects and the ``pii_vault_damaged_subjects`` gauge counts them."""

    code: ClassVar[VaultErrorCode] = "subject_damaged"


class SubjectKeyMissing(SubjectShredded):
    """A read found the subject key gone. Internal: the service decides (under a write
    lock) whether the subject was being shredded or is damaged, and raises that."""

    def __init__(self, subject_id: str) -> None:
        super().__init__("subject key destroyed")
        self.subject_id = subject_id


class DuplicateExternalId(VaultError):
    code: ClassVar[VaultErrorCode] = "duplicate_external_id"


class DecryptionError(VaultError):
    """A stored ciphertext did not decrypt. Deliberately says nothing about why."""

    code: ClassVar[VaultErrorCode] = "decryption_failed"

    def __init__(self) -> None:
        super().__init__("stored value could not be decrypted")


class ServiceUnavailable(VaultError):
    """A dependency (key provider, database) cannot do its part: fail closed, retry later."""

    code: ClassVar[VaultErrorCode] = "unavailable"


class KeyProviderUnavailable(ServiceUnavailable):
    code: ClassVar[VaultErrorCode] = "key_provider_unavailable"


class RegionKeysUnavailable(ServiceUnavailable):
    """No open key shard of the subject's region: nothing is stored (policy §7)."""

    code: ClassVar[VaultErrorCode] = "region_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code: ClassVar[VaultErrorCode] = "database_unavailable"


class ShredPending(KeyProviderUnavailable):
    """The subject is marked ``shredding`` (reads blocked) but its key is not destroyed yet."""

    code: ClassVar[VaultErrorCode] = "shred_pending"


_OURS = ("vault.", "access.", "keys.", "api.")


def frames(tb: TracebackType | None, limit: int = 8) -> str:
    """Where an error passed (file:line function), innermost first; no message, no locals."""
    picked = traceback.extract_tb(tb)[-limit:]
    return " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(picked))


def cause(exc: BaseException) -> str:
    """One line naming an error for a log: our own errors' messages are written never to
    hold a value; anyone else's (a driver's, a KeyError's) may, so only type and frames."""
    if type(exc).__module__.startswith(_OURS):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} at {frames(exc.__traceback__)}"
