"""``pii-vault init`` and ``init-shard``: a deployment's database, Vault mounts, keys and
policy, and each key shard's."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from access.log_identity import identity_record, settle_log_id
from api.cli.base import (
    _one_line_errors,
    _operator_name,
    _redact_url,
    _runtime,
)
from vault.config import Settings
from vault.errors import ConfigError


@click.command()
@_one_line_errors
def init() -> None:
    """Create the database schema and, for transit, the Vault mount, keys and policy. Idempotent.

    With transit, VAULT_TOKEN must be privileged (mounts, policies); the service
    then runs with a token holding only the `pii-vault` policy.
    """
    settings = Settings.from_env()
    engine = _migrated_engine(settings)  # first: the audit log's id decides the service policy
    pinned_now = False
    if settings.keys.kind == "transit":
        from keys.anchors import KvAnchors
        from keys.factory import primary_cluster
        from keys.transit import POLICY_NAME
        from keys.transit_setup import bootstrap_transit, pin_log_identity

        if not settings.keys.addrs or not settings.keys.vault_token:
            raise ConfigError(
                "init with PII_VAULT_KEY_PROVIDER=transit needs VAULT_ADDR (or "
                "PII_VAULT_VAULT_ADDRS) and VAULT_TOKEN"
            )
        # Through the cluster client: any node will do (our own writes are read back
        # consistently, a dead node is skipped).
        slow = dataclasses.replace(settings.keys, timeout=max(10.0, settings.keys.timeout))
        cluster = primary_cluster(slow)
        client = cluster.client(settings.keys.vault_token)
        here = [s for s in settings.keys.shards if s.addr is None]
        # At the active node: a standby's answers (its policy cache, say) may trail it, and
        # init must report exactly what it repaired.
        active = cluster.authority() or cluster.current
        with cluster.pinned(active):
            log_id = settle_log_id(KvAnchors(client), engine)
            steps = bootstrap_transit(
                client,
                mount=settings.keys.transit_mount,
                shard_mounts=[s.mount for s in here],
                log_id=log_id,
            )
            pinned_now = pin_log_identity(client, identity_record(log_id))
        for step in steps:
            click.echo(f"vault: {step}")
        click.echo(
            f"vault: transit mount '{settings.keys.transit_mount}/', keys pii-index and pii-audit, "
            f"policy '{POLICY_NAME}' ready"
        )
        for shard in here:
            click.echo(f"vault: shard {shard.number} on mount '{shard.mount}/' ready")
        for shard in settings.keys.shards:
            if shard.addr is not None:
                click.echo(
                    f"vault: shard {shard.number} is on {shard.addr}: run `pii-vault init-shard "
                    f"{shard.number}` with that cluster's privileged VAULT_TOKEN"
                )
    engine.dispose()
    with _runtime(settings, migrate=True) as runtime:
        runtime.check()
        # The genesis anchor: from now on the log is never empty behind an anchor.
        log_id, pinned, _ = runtime.pin_audit_log(_operator_name(), pinned_now=pinned_now)
        seeded = runtime.policy.seed_default(_operator_name())
        sealed = runtime.policy.seal_existing(_operator_name())
        anchored = runtime.audit.checkpoint()
    click.echo(
        f"audit: log {log_id} {'pinned in the anchor store' if pinned else 'is the pinned log'}"
        f", anchored up to seq {anchored}"
    )
    for row in sealed:
        click.echo(f"grants: sealed {row} (it predates grant tags)")
    click.echo(f"database: schema up to date ({_redact_url(settings.effective_database_url)})")
    click.echo(
        "policy: default policy loaded from access/policy.csv"
        if seeded
        else "policy: existing policy kept"
    )
    click.echo(f"key provider: {settings.keys.kind} ready")


def _migrated_engine(settings: Settings) -> Any:
    from vault.db import make_engine, migrate, private_directory

    private_directory(settings.home)
    engine = make_engine(settings.effective_database_url, timeout=settings.db_timeout)
    migrate(engine)
    migrate(engine, "access:migrations")
    return engine


@click.command("init-shard")
@click.argument("number", type=int)
@click.option("--service-token", is_flag=True, help="Also print a token for the service.")
@_one_line_errors
def init_shard(number: int, service_token: bool) -> None:
    """Set up subject-key shard NUMBER on its own cluster (PII_VAULT_KEY_SHARDS). Idempotent.

    VAULT_TOKEN must be privileged on that cluster; the service then uses a token
    (PII_VAULT_SHARD_<N>_TOKEN) holding only the shard policy: subject keys on that mount.
    """
    from keys.cluster import VaultCluster, parse_addrs
    from keys.transit import POLICY_NAME
    from keys.transit_setup import bootstrap_shard, create_service_token

    settings = Settings.from_env()
    shard = next((s for s in settings.keys.shards if s.number == number), None)
    if shard is None or shard.addr is None:
        raise ConfigError(
            f"shard {number} is not in PII_VAULT_KEY_SHARDS as another cluster's mount "
            "(a mount on the primary's cluster is set up by `pii-vault init`)"
        )
    if not settings.keys.vault_token:
        raise ConfigError("init-shard needs that cluster's privileged token in VAULT_TOKEN")
    client = VaultCluster(
        parse_addrs(shard.addr),
        connect_timeout=settings.keys.connect_timeout,
        timeout=max(10.0, settings.keys.timeout),
    ).client(settings.keys.vault_token)
    for step in bootstrap_shard(client, mount=shard.mount, policy_name=POLICY_NAME):
        click.echo(f"vault: {step}")
    click.echo(f"vault: shard {number} on {shard.addr}, mount '{shard.mount}/' ready")
    if service_token:
        click.echo(create_service_token(client, policy_name=POLICY_NAME))
