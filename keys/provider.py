"""The one key-provider interface every backend implements.

A provider holds every long-lived secret: per-subject key-encryption keys, the
blind-index HMAC key and the Ed25519 signing key. The database only ever sees
wrapped data keys, MACs and signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class DataKey:
    """A fresh data key: use ``plaintext`` once, store only ``wrapped``."""

    plaintext: bytes = field(repr=False)
    wrapped: str


@runtime_checkable
class KeyProvider(Protocol):
    """Per-subject key management, blind indexing and signing."""

    name: str

    @property
    def calls(self) -> int:
        """How many backend calls this provider has made (for tests, metrics, benchmarks)."""
        ...

    def check(self) -> None:
        """Raise KeyUnavailable unless the provider can serve requests now."""

    def create_subject_key(self, subject_id: str) -> None:
        """Create the subject's key-encryption key (non-exportable)."""

    def subject_key_exists(self, subject_id: str) -> bool:
        """Whether the subject's key still exists (False after a shred)."""
        ...

    def generate_data_key(self, subject_id: str) -> DataKey:
        """A new 256-bit data key, wrapped under the subject key."""
        ...

    def unwrap_data_key(self, subject_id: str, wrapped: str) -> bytes:
        """Unwrap a data key; KeyDestroyed after a shred, UnwrapFailed if tampered."""
        ...

    def rotate_subject_key(self, subject_id: str) -> None:
        """Add a new subject-key version; old wrapped keys stay unwrappable."""

    def rewrap_data_keys(self, subject_id: str, wrapped: Sequence[str]) -> list[str]:
        """Re-wrap data keys under the newest subject-key version, in order."""
        ...

    def destroy_subject_key(self, subject_id: str) -> None:
        """Hard-delete every version of the subject key. Idempotent."""

    def blind_index(self, messages: Sequence[bytes]) -> list[str]:
        """Deterministic keyed MACs for exact-match lookup, in order."""
        ...

    def sign(self, message: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature by the provider's signing key."""
        ...

    def signing_public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key that verifies ``sign``."""
        ...

    def close(self) -> None:
        """Release connections."""
