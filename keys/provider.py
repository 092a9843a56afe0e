"""The key interfaces: one small protocol per primitive, as tink gives each primitive its own.

Consumers depend on the narrowest one they use: the vault on ``SubjectKeys``
and ``BlindIndexer``, the audit log and deletion receipts on ``Signer``. A
backend (transit, local) implements all three plus a lifecycle
(``KeyBackend``); a test fake implements only what its consumer needs. Every
method raises only ``keys.errors`` types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from keys.vault_auth import AuthState


@dataclass(frozen=True)
class DataKey:
    """A fresh data key: use ``plaintext`` once, store only ``wrapped``."""

    plaintext: bytes = field(repr=False)
    wrapped: str


@runtime_checkable
class SubjectKeys(Protocol):
    """Per-subject key-encryption keys: the keys whose destruction is a shred."""

    def create_subject_key(self, subject_id: str) -> None:
        """Create the subject's key-encryption key (non-exportable). Idempotent."""

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


@runtime_checkable
class SubjectIdIssuer(Protocol):
    """A backend that chooses new subjects' ids (``keys.sharding``: the id names the shard
    holding the key). Backends without it leave ids to the vault (random version-4 UUIDs)."""

    def new_subject_id(self, region: str | None = None) -> str:
        """A fresh, unguessable subject id, for a subject of ``region`` (a backend with
        shards bound to regions keys the subject in one of its region's shards)."""
        ...


@runtime_checkable
class BlindIndexer(Protocol):
    """Deterministic keyed MACs for exact-match lookup, under versioned keys.

    A digest reads ``v<N>:<base64>``: N is the index-key version that made it.
    Old versions are retired by an operator (``IndexKeyAdmin``) once live
    digests are recomputed, so digests in old backups can no longer be
    confirmed by anyone, the service included.
    """

    def blind_index(self, messages: Sequence[bytes], version: int | None = None) -> list[str]:
        """One MAC per message, in order, under ``version`` (default: the newest)."""
        ...


@runtime_checkable
class IndexKeyAdmin(Protocol):
    """Privileged index-key operations (``pii-vault reindex``); the service token cannot."""

    def rotate_index_key(self) -> int:
        """Add an index-key version; returns it (new digests are made under it)."""
        ...

    def retire_index_keys_before(self, version: int) -> None:
        """Make every older version unusable and delete it for good."""


@runtime_checkable
class Signer(Protocol):
    """Ed25519 signatures for audit checkpoints and deletion receipts."""

    name: str  # named in receipts, so a verifier knows which provider signed

    def sign(self, message: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature."""
        ...

    def signing_public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key that verifies ``sign``."""
        ...


@runtime_checkable
class GrantKeys(Protocol):
    """The key that authenticates grants (principal rows, policy rules, API-key digests).

    Kept out of the database so that rows written with SQL grant nothing: the MACs
    are computed in the service from a key derived in the backend (transit HMAC under
    ``pii-grants``), fetched once per process."""

    def grant_key(self) -> bytes:
        """A 32-byte secret, the same in every process of one deployment."""
        ...


@runtime_checkable
class AnchorStore(Protocol):
    """Write-once records outside the database (audit anchors): create and read, never change."""

    def put(self, log: str, key: int, record: dict[str, Any]) -> bool:
        """Create the record under ``key`` of ``log``; False (nothing written) if one exists."""
        ...

    def get(self, log: str, key: int) -> dict[str, Any] | None:
        """The record under ``key`` of ``log``, or None."""
        ...

    def keys(self, log: str) -> list[int]:
        """Every key of ``log`` holding a record, ascending."""
        ...

    def logs(self) -> list[str]:
        """Every log (namespace) that holds at least one record."""
        ...

    def identity(self) -> dict[str, Any] | None:
        """The pinned identity of the deployment's audit log (written once at init), or None."""
        ...

    def pin_identity(self, record: dict[str, Any]) -> bool:
        """Write the identity once (privileged: ``pii-vault init``); False if one exists."""
        ...


@runtime_checkable
class PublishedRecords(Protocol):
    """Create-only records beside the anchors, outside the database (issue 17; the anchor
    store implements it): ``kind`` "shreds" (a shred decided stays decided whatever a
    restored database says) and "grants" (each sealed grant state's epoch)."""

    def publish(self, log: str, kind: str, name: str, record: dict[str, Any]) -> bool:
        """Create ``name`` of ``kind`` under ``log``; False (nothing written) if it exists."""
        ...

    def published(self, log: str, kind: str, name: str) -> dict[str, Any] | None:
        """The record, or None."""
        ...

    def published_names(self, log: str, kind: str) -> list[str]:
        """Every record name of ``kind`` under ``log``, ascending."""
        ...


@runtime_checkable
class KeyRotation(Protocol):
    """What ``pii-vault rotate-keys`` needs beyond ``SubjectKeys`` (issue 22)."""

    def subject_key_rotated(self, subject_id: str) -> float | None:
        """When the subject key's newest version was made (Unix time); None: no key."""
        ...

    def trim_subject_key(self, subject_id: str) -> None:
        """Only the newest version decrypts from now on and the older ones are deleted —
        called once every data key of the subject is wrapped under the newest version
        (a data-key row restored from before the rotation then unwraps nothing)."""


@runtime_checkable
class KeyInventory(Protocol):
    """What `pii-vault reconcile` compares with the database: which subject keys exist."""

    def subject_key_ids(self) -> list[str]:
        """The subject id of every subject key the backend holds."""
        ...

    def subject_key_created(self, subject_id: str) -> float | None:
        """When the subject's key was created (Unix time), or None if it does not exist."""
        ...


@runtime_checkable
class KeyBackend(SubjectKeys, BlindIndexer, Signer, GrantKeys, KeyInventory, KeyRotation, Protocol):
    """What a backend (transit, local) implements: every primitive plus its lifecycle."""

    def anchor_store(self) -> AnchorStore:
        """Where audit anchors go: outside the database, append-only for the service."""
        ...

    def check(self) -> None:
        """Raise KeyUnavailable unless the backend can serve requests now."""

    def refresh_auth(self) -> None:
        """Keep the backend's credentials alive (renew a token); a no-op where none expire."""

    @property
    def auth_state(self) -> AuthState | None:
        """How authentication stands (None: nothing to authenticate)."""

    def close(self) -> None:
        """Release connections."""
