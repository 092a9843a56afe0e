"""``pii-vault init`` and ``init-shard``: a deployment's database, Vault mounts, keys and
policy, and each key shard's."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import click

from access.log_identity import database_log_id, identity_record, settle_log_id
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
    then runs with a token holding only the `pii-vault` policy. Each transit mount is
    claimed for this deployment; a mount another deployment claimed is refused.
    """
    settings = Settings.from_env()
    pinned_now = False
    if settings.keys.kind == "transit":
        from keys.anchors import KvAnchors
        from keys.factory import primary_cluster
        from keys.transit import check_token
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
        # Before anything changes, the database included: Vault answers this token.
        check_token(client, ", ".join(settings.keys.addrs))
    engine = _migrated_engine(settings)  # before Vault: the log's id decides the policy
    if settings.keys.kind == "transit":
        here = [s for s in settings.keys.shards if s.addr is None]
        # At the active node: a standby's answers (its policy cache, say) may trail it, and
        # init must report exactly what it repaired.
        active = cluster.authority() or cluster.current
        with cluster.pinned(active):
            anchors = KvAnchors(client, settings.keys.anchor_mount)
            log_id = settle_log_id(anchors, engine)
            steps = bootstrap_transit(
                client,
                mount=settings.keys.transit_mount,
                policy_name=settings.keys.policy_name,
                shard_mounts=[s.mount for s in here],
                log_id=log_id,
                anchor_mount=settings.keys.anchor_mount,
                known=partial(_known_subjects, engine),
            )
            pinned_now = pin_log_identity(
                client, identity_record(log_id), settings.keys.anchor_mount
            )
        for step in steps:
            click.echo(f"vault: {step}")
        click.echo(
            f"vault: transit mount '{settings.keys.transit_mount}/', keys pii-index and pii-audit, "
            f"policy '{settings.keys.policy_name}' ready"
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
        runtime.check_schema_covers_data()
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


def _known_subjects(engine: Any, ids: list[str]) -> set[str]:
    """Which of ``ids`` this database holds a subject row for (any status)."""
    from sqlalchemy import select

    from vault.models import Subject

    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found.update(conn.scalars(select(Subject.id).where(Subject.id.in_(chunk))))
    return found


def _migrated_engine(settings: Settings) -> Any:
    from vault.db import make_engine, migrate, private_directory

    private_directory(settings.home)
    engine = make_engine(settings.effective_database_url, timeout=settings.db_timeout)
    migrate(engine)
    migrate(engine, "access:migrations")
    return engine


def _initialised_engine(settings: Settings) -> Any:
    """``init-shard``: the database ``init`` set up, as it is (nothing migrated)."""
    from vault.db import make_engine, require_schema

    engine = make_engine(settings.effective_database_url, timeout=settings.db_timeout)
    try:
        require_schema(engine)
    except BaseException:
        engine.dispose()
        raise
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
    from keys.transit import check_token
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
    engine = _initialised_engine(settings)
    log_id = database_log_id(engine)
    client = VaultCluster(
        parse_addrs(shard.addr),
        connect_timeout=settings.keys.connect_timeout,
        timeout=max(10.0, settings.keys.timeout),
    ).client(settings.keys.vault_token)
    check_token(client, shard.addr)
    steps = bootstrap_shard(
        client,
        mount=shard.mount,
        policy_name=settings.keys.policy_name,
        log_id=log_id,
        known=partial(_known_subjects, engine),
    )
    engine.dispose()
    for step in steps:
        click.echo(f"vault: {step}")
    click.echo(f"vault: shard {number} on {shard.addr}, mount '{shard.mount}/' ready")
    if service_token:
        click.echo(create_service_token(client, policy_name=settings.keys.policy_name))
