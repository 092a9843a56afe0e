"""Choose the key provider from configuration; reject bad configuration at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keys.errors import KeyProviderConfigError
from keys.provider import KeyBackend

PROVIDERS = ("local", "transit")


@dataclass(frozen=True)
class KeyProviderSettings:
    kind: str = "local"
    home: Path = Path(".pii-vault")
    vault_addr: str | None = None
    vault_token: str | None = None
    transit_mount: str = "transit"
    local_master_key: str | None = None
    timeout: float = 5.0
    role_id: str | None = None
    secret_id: str | None = None
    role_id_file: str | None = None
    secret_id_file: str | None = None
    approle_mount: str = "approle"

    @property
    def uses_approle(self) -> bool:
        return bool(self.role_id or self.role_id_file)

    def __repr__(self) -> str:  # never print the token or master key
        return (
            f"KeyProviderSettings(kind={self.kind!r}, home={str(self.home)!r}, "
            f"vault_addr={self.vault_addr!r}, transit_mount={self.transit_mount!r})"
        )


def build_key_provider(settings: KeyProviderSettings) -> KeyBackend:
    if settings.kind == "transit":
        from keys.transit import TransitKeyProvider
        from keys.vault_auth import AppRoleAuth, TokenAuth, VaultAuth

        if not settings.vault_addr:
            raise KeyProviderConfigError("PII_VAULT_KEY_PROVIDER=transit needs VAULT_ADDR")
        auth: VaultAuth
        if settings.uses_approle:  # AppRole wins: VAULT_TOKEN may be an operator's own
            auth = AppRoleAuth(
                settings.role_id,
                settings.secret_id,
                role_id_file=settings.role_id_file,
                secret_id_file=settings.secret_id_file,
                mount=settings.approle_mount,
            )
        elif settings.vault_token:
            auth = TokenAuth(settings.vault_token)
        else:
            raise KeyProviderConfigError(
                "PII_VAULT_KEY_PROVIDER=transit needs AppRole (VAULT_ROLE_ID and "
                "VAULT_SECRET_ID, or their _FILE variants) or VAULT_TOKEN"
            )
        return TransitKeyProvider(
            settings.vault_addr, mount=settings.transit_mount, timeout=settings.timeout, auth=auth
        )
    if settings.kind == "local":
        from keys.local import LocalKeyProvider

        return LocalKeyProvider.open(settings.home, settings.local_master_key)
    raise KeyProviderConfigError(
        f"unknown key provider {settings.kind!r}: expected one of {', '.join(PROVIDERS)}"
    )
