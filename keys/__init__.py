"""Key providers: Vault/OpenBao transit and an embedded local keystore, behind one interface."""

from keys.errors import (
    KeyDestroyed,
    KeyProviderConfigError,
    KeyProviderError,
    KeyUnavailable,
    UnwrapFailed,
)
from keys.factory import KeyProviderSettings, build_key_provider
from keys.provider import DataKey, KeyProvider
from keys.signing import verify_signature

__all__ = [
    "DataKey",
    "KeyDestroyed",
    "KeyProvider",
    "KeyProviderConfigError",
    "KeyProviderError",
    "KeyProviderSettings",
    "KeyUnavailable",
    "UnwrapFailed",
    "build_key_provider",
    "verify_signature",
]
