"""Choose the key provider from configuration; reject bad configuration at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from keys.cluster import VaultCluster, parse_addrs
from keys.errors import KeyProviderConfigError
from keys.provider import KeyBackend
from keys.sharding import ShardSettings

PROVIDERS = ("local", "transit")


@dataclass(frozen=True)
class KeyProviderSettings:
    kind: str = "local"
    home: Path = Path(".pii-vault")
    vault_addr: str | None = None
    vault_addrs: tuple[str, ...] = ()  # PII_VAULT_VAULT_ADDRS: several nodes, with failover
    vault_token: str | None = field(default=None, repr=False)  # never in a repr or a log
    transit_mount: str = "transit"
    # PII_VAULT_ANCHOR_MOUNT / PII_VAULT_VAULT_POLICY: a second deployment on the same
    # OpenBao needs its own of each, as of the transit mount (issue 23).
    anchor_mount: str = "pii-audit-anchors"
    policy_name: str = "pii-vault"
    local_master_key: str | None = field(default=None, repr=False)
    timeout: float = 5.0  # PII_VAULT_VAULT_TIMEOUT: waiting for a reply
    connect_timeout: float = 1.0  # PII_VAULT_VAULT_CONNECT_TIMEOUT: reaching a node
    role_id: str | None = None
    secret_id: str | None = field(default=None, repr=False)
    role_id_file: str | None = None
    secret_id_file: str | None = None
    approle_mount: str = "approle"
    shards: tuple[ShardSettings, ...] = ()  # PII_VAULT_KEY_SHARDS (transit only)
    open_shards: tuple[int, ...] = ()  # PII_VAULT_KEY_SHARDS_OPEN; () = every shard
    primary_region: str | None = None  # PII_VAULT_SHARD_0_REGION (with shards only)

    @property
    def addrs(self) -> tuple[str, ...]:
        """Every address of the primary cluster: the list if given, else VAULT_ADDR."""
        if self.vault_addrs:
            return self.vault_addrs
        return (self.vault_addr,) if self.vault_addr else ()

    @property
    def uses_approle(self) -> bool:
        return bool(self.role_id or self.role_id_file)

    def __repr__(self) -> str:  # never print the token or master key
        return (
            f"KeyProviderSettings(kind={self.kind!r}, home={str(self.home)!r}, "
            f"vault_addrs={self.addrs!r}, transit_mount={self.transit_mount!r}, "
            f"anchor_mount={self.anchor_mount!r}, policy_name={self.policy_name!r})"
        )


def build_key_provider(settings: KeyProviderSettings) -> KeyBackend:
    if settings.shards and settings.kind != "transit":
        raise KeyProviderConfigError("PII_VAULT_KEY_SHARDS needs PII_VAULT_KEY_PROVIDER=transit")
    if settings.kind == "transit":
        cluster = primary_cluster(settings)
        primary = _transit(settings, cluster)
        if not settings.shards:
            return primary
        from keys.sharding import ShardedKeys

        try:
            shards = {s.number: _transit(settings, cluster, s) for s in settings.shards}
        except BaseException:
            primary.close()
            raise
        regions = {s.number: s.region for s in settings.shards if s.region}
        if settings.primary_region:
            regions[0] = settings.primary_region
        return ShardedKeys(primary, shards, settings.open_shards, regions)
    if settings.kind == "local":
        from keys.local import LocalKeyProvider

        return LocalKeyProvider.open(settings.home, settings.local_master_key)
    raise KeyProviderConfigError(
        f"unknown key provider {settings.kind!r}: expected one of {', '.join(PROVIDERS)}"
    )


def primary_cluster(settings: KeyProviderSettings) -> VaultCluster:
    """The primary cluster's nodes, timeouts and breaker (shared by the shards on it)."""
    if not settings.addrs:
        raise KeyProviderConfigError(
            "PII_VAULT_KEY_PROVIDER=transit needs VAULT_ADDR (or PII_VAULT_VAULT_ADDRS)"
        )
    return VaultCluster(
        settings.addrs, connect_timeout=settings.connect_timeout, timeout=settings.timeout
    )


def _transit(
    settings: KeyProviderSettings, cluster: VaultCluster, shard: ShardSettings | None = None
) -> KeyBackend:
    """The primary transit backend, or one shard's (its own cluster's credentials, or the
    primary's when it is another mount on the primary's cluster)."""
    from keys.transit import SIGNING_KEY, TransitKeyProvider
    from keys.vault_auth import AppRoleAuth, TokenAuth, VaultAuth

    lookup_self = "/v1/auth/token/lookup-self"  # a shard's token reads subject keys only
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
        own = VaultCluster(
            parse_addrs(shard.addr),
            connect_timeout=settings.connect_timeout,
            timeout=settings.timeout,
        )
        return TransitKeyProvider(own, mount=shard.mount, auth=shard_auth, probe_path=lookup_self)
    # The primary's cluster (the primary itself, or a shard that is another mount on it).
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
    if shard is not None:
        return TransitKeyProvider(cluster, mount=shard.mount, auth=auth, probe_path=lookup_self)
    return TransitKeyProvider(
        cluster,
        mount=settings.transit_mount,
        anchor_mount=settings.anchor_mount,
        auth=auth,
        probe_path=f"/v1/{settings.transit_mount}/keys/{SIGNING_KEY}",
    )


def _read_secret(path: str | None) -> str:
    from keys.vault_auth import read_secret_file

    if not path:
        raise KeyProviderConfigError("a shard on another cluster needs a token")
    return read_secret_file(path, "the shard token file")
