"""Choose the key provider from configuration; reject bad configuration at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keys.errors import KeyProviderConfigError
from keys.provider import KeyBackend
from keys.sharding import ShardSettings

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
    shards: tuple[ShardSettings, ...] = ()  # PII_VAULT_KEY_SHARDS (transit only)
    open_shards: tuple[int, ...] = ()  # PII_VAULT_KEY_SHARDS_OPEN; () = every shard

    @property
    def uses_approle(self) -> bool:
        return bool(self.role_id or self.role_id_file)

    def __repr__(self) -> str:  # never print the token or master key
        return (
            f"KeyProviderSettings(kind={self.kind!r}, home={str(self.home)!r}, "
            f"vault_addr={self.vault_addr!r}, transit_mount={self.transit_mount!r})"
        )


def build_key_provider(settings: KeyProviderSettings) -> KeyBackend:
    if settings.shards and settings.kind != "transit":
        raise KeyProviderConfigError("PII_VAULT_KEY_SHARDS needs PII_VAULT_KEY_PROVIDER=transit")
    if settings.kind == "transit":
        primary = _transit(settings)
        if not settings.shards:
            return primary
        from keys.sharding import ShardedKeys

        try:
            shards = {s.number: _transit(settings, s) for s in settings.shards}
        except BaseException:
            primary.close()
            raise
        return ShardedKeys(primary, shards, settings.open_shards)
    if settings.kind == "local":
        from keys.local import LocalKeyProvider

        return LocalKeyProvider.open(settings.home, settings.local_master_key)
    raise KeyProviderConfigError(
        f"unknown key provider {settings.kind!r}: expected one of {', '.join(PROVIDERS)}"
    )


def _transit(settings: KeyProviderSettings, shard: ShardSettings | None = None) -> KeyBackend:
    """The primary transit backend, or one shard's (its own cluster's credentials, or the
    primary's when it is another mount on the primary's cluster)."""
    from keys.transit import TransitKeyProvider
    from keys.vault_auth import AppRoleAuth, TokenAuth, VaultAuth

    if shard is not None and shard.addr is not None:
        shard_auth: VaultAuth
        if shard.role_id_file and shard.secret_id_file:
            shard_auth = AppRoleAuth(
                None,
                None,
                role_id_file=shard.role_id_file,
                secret_id_file=shard.secret_id_file,
                mount=settings.approle_mount,
            )
        else:
            token = shard.token or _read_secret(shard.token_file)
            shard_auth = TokenAuth(token)
        return TransitKeyProvider(
            shard.addr, mount=shard.mount, timeout=settings.timeout, auth=shard_auth
        )
    # The primary's cluster (the primary itself, or a shard that is another mount on it).
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
    mount = shard.mount if shard is not None else settings.transit_mount
    return TransitKeyProvider(settings.vault_addr, mount=mount, timeout=settings.timeout, auth=auth)


def _read_secret(path: str | None) -> str:
    if not path:
        raise KeyProviderConfigError("a shard on another cluster needs a token")
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KeyProviderConfigError(f"cannot read the shard token file {path}") from exc
