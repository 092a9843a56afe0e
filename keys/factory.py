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

    def __repr__(self) -> str:  # never print the token or master key
        return (
            f"KeyProviderSettings(kind={self.kind!r}, home={str(self.home)!r}, "
            f"vault_addr={self.vault_addr!r}, transit_mount={self.transit_mount!r})"
        )


def build_key_provider(settings: KeyProviderSettings) -> KeyBackend:
    if settings.kind == "transit":
        from keys.transit import TransitKeyProvider

        if not settings.vault_addr:
            raise KeyProviderConfigError("PII_VAULT_KEY_PROVIDER=transit needs VAULT_ADDR")
        if not settings.vault_token:
            raise KeyProviderConfigError("PII_VAULT_KEY_PROVIDER=transit needs VAULT_TOKEN")
        return TransitKeyProvider(
            settings.vault_addr,
            settings.vault_token,
            mount=settings.transit_mount,
            timeout=settings.timeout,
        )
    if settings.kind == "local":
        from keys.local import LocalKeyProvider

        return LocalKeyProvider.open(settings.home, settings.local_master_key)
    raise KeyProviderConfigError(
        f"unknown key provider {settings.kind!r}: expected one of {', '.join(PROVIDERS)}"
    )
