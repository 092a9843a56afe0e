"""The vault error hierarchy. Only ``api/`` maps these to HTTP statuses.

Messages name fields, codes and ids, never values: they may end up in logs.
"""

from __future__ import annotations

from collections.abc import Mapping


class VaultError(Exception):
    """Base class for every error the vault service raises."""

    code = "error"


class ConfigError(VaultError):
    """Configuration is invalid; raised at start-up."""

    code = "config"


class ValidationError(VaultError):
    """Input was rejected; nothing was stored. ``errors`` maps field -> reason code."""

    code = "invalid"

    def __init__(self, message: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors: dict[str, str] = dict(errors or {})


class SubjectNotFound(VaultError):
    code = "not_found"


class SubjectShredded(VaultError):
    """The subject is shredded, or being shredded: no plaintext, ever."""

    code = "shredded"


class DuplicateExternalId(VaultError):
    code = "duplicate_external_id"


class DecryptionError(VaultError):
    """A stored ciphertext did not decrypt. Deliberately says nothing about why."""

    code = "decryption_failed"

    def __init__(self) -> None:
        super().__init__("stored value could not be decrypted")


class ServiceUnavailable(VaultError):
    """A dependency (key provider, database) cannot do its part: fail closed, retry later."""

    code = "unavailable"


class KeyProviderUnavailable(ServiceUnavailable):
    code = "key_provider_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class ShredPending(KeyProviderUnavailable):
    """The subject is marked ``shredding`` (reads blocked) but its key is not destroyed yet."""

    code = "shred_pending"
