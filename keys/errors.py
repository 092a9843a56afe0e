"""The key-provider error hierarchy.

Third-party errors (hvac, requests, sqlite3, PyNaCl) are translated into these
where they enter, so callers never depend on a backend's exception types.
Messages never carry key material or plaintext.
"""

from __future__ import annotations


class KeyProviderError(Exception):
    """Base class: the key provider could not do what was asked."""


class KeyProviderConfigError(KeyProviderError):
    """The provider is misconfigured (bad address, missing token, policy denies a call)."""


class KeyUnavailable(KeyProviderError):
    """The provider is unreachable, sealed or failing: retry later, fail closed now."""


class RegionUnavailable(KeyProviderError):
    """No open key shard may hold a new subject of this region (policy §7): its keys stay
    in its jurisdiction's shards, so nothing is created elsewhere instead."""


class KeyDestroyed(KeyProviderError):
    """The subject key no longer exists (crypto-shredded): its data is gone for good."""


class UnwrapFailed(KeyProviderError):
    """A wrapped data key did not unwrap. Deliberately says nothing about why."""

    def __init__(self) -> None:
        super().__init__("wrapped data key could not be unwrapped")


class AnchorNotFound(KeyProviderError):
    """No anchor is stored under that key (the tip of the anchor chain was reached)."""
