"""``pii-vault audit``: verify the chain and the grant state."""

from __future__ import annotations

import sys

import click

from api.cli.base import (
    EXIT_ERROR,
    _one_line_errors,
    _operator_name,
    _runtime,
)


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@_one_line_errors
def audit_verify() -> None:
    """Recompute the hash chain and check checkpoint signatures; exit 1 naming the first bad seq."""
    with _runtime() as runtime:
        result = runtime.guard.verified()  # a failure alerts (PII_VAULT_ALERT_URL)
    click.echo(result.summary())
    if not result.ok:
        sys.exit(EXIT_ERROR)


@audit.command("grants")
@click.option(
    "--accept-restore",
    is_flag=True,
    help="After restoring a backup on purpose: seal the grants as they are now (rows whose "
    "tags verify) as the newest state. Forged rows stay refused.",
)
@_one_line_errors
def audit_grants(accept_restore: bool) -> None:
    """List grant rows that fail their tags or the sealed grant state (written with SQL, or
    restored from an older backup)."""
    with _runtime() as runtime:
        findings = runtime.policy.findings()
        if accept_restore and findings:
            for finding in findings:
                click.echo(finding)
            accepted = runtime.policy.accept_restored(_operator_name())
            click.echo(
                f"accepted the restored grants: {len(accepted)} principal(s) "
                f"({', '.join(accepted)[:2000]}); disable or rotate any that should not be back"
            )
            return
    for finding in findings:
        click.echo(finding)
    if findings:
        click.echo(f"{len(findings)} grant finding(s): these rows grant nothing", err=True)
        sys.exit(EXIT_ERROR)
    click.echo("grants intact: every principal and policy rule verifies")
