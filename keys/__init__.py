"""Key providers (Vault/OpenBao transit, an embedded keystore) behind per-primitive interfaces."""

from keys.counting import CallCounter
from keys.errors import (
    KeyDestroyed,
    KeyProviderConfigError,
    KeyProviderError,
    KeyUnavailable,
    UnwrapFailed,
)
from keys.factory import KeyProviderSettings, build_key_provider
from keys.provider import BlindIndexer, DataKey, KeyBackend, Signer, SubjectKeys
from keys.signing import verify_signature

__all__ = [
    "BlindIndexer",
    "CallCounter",
    "DataKey",
    "KeyBackend",
    "KeyDestroyed",
    "KeyProviderConfigError",
    "KeyProviderError",
    "KeyProviderSettings",
    "KeyUnavailable",
    "Signer",
    "SubjectKeys",
    "UnwrapFailed",
    "build_key_provider",
    "verify_signature",
]
