"""The ``pii-vault`` command line.

Errors print one clear line and exit non-zero, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from keys.errors import KeyProviderConfigError, KeyProviderError, KeyUnavailable
from vault.config import Settings
from vault.errors import ConfigError, ServiceUnavailable, VaultError
from vault.service import VaultService

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def _one_line_errors(fn: F) -> F:
    """Turn project errors into ``pii-vault: error: ...`` and an exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, KeyProviderConfigError) as exc:
            click.echo(f"pii-vault: configuration error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        except (ServiceUnavailable, KeyUnavailable) as exc:
            click.echo(f"pii-vault: unavailable: {exc}", err=True)
            sys.exit(EXIT_UNAVAILABLE)
        except (VaultError, KeyProviderError) as exc:
            click.echo(f"pii-vault: error: {exc}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def _service(migrate: bool = False) -> VaultService:
    return VaultService.from_settings(Settings.from_env(), migrate=migrate)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """pii-vault: encrypted personal-data vault with crypto-shredding.

    Configured by PII_VAULT_HOME, PII_VAULT_DATABASE_URL, PII_VAULT_KEY_PROVIDER
    (local|transit), VAULT_ADDR and VAULT_TOKEN.
    """


@main.command()
@_one_line_errors
def init() -> None:
    """Create the database schema and, for transit, the Vault mount, keys and policy. Idempotent.

    With transit, VAULT_TOKEN must be privileged (mounts, policies); the service
    then runs with a token holding only the `pii-vault` policy.
    """
    settings = Settings.from_env()
    if settings.keys.kind == "transit":
        import hvac

        from keys.transit import POLICY_NAME, bootstrap_transit

        if not settings.keys.vault_addr or not settings.keys.vault_token:
            raise ConfigError(
                "init with PII_VAULT_KEY_PROVIDER=transit needs VAULT_ADDR and VAULT_TOKEN"
            )
        client = hvac.Client(
            url=settings.keys.vault_addr, token=settings.keys.vault_token, timeout=10
        )
        bootstrap_transit(client, mount=settings.keys.transit_mount)
        click.echo(
            f"vault: transit mount '{settings.keys.transit_mount}/', keys pii-index and pii-audit, "
            f"policy '{POLICY_NAME}' ready"
        )
    service = _service(migrate=True)
    try:
        service.check()
    finally:
        service.close()
    click.echo(f"database: schema up to date ({_redact_url(settings.effective_database_url)})")
    click.echo(f"key provider: {settings.keys.kind} ready")


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


@main.command()
@click.argument("subject_id", required=False)
@click.option("--pending", is_flag=True, help="Complete every shred left pending (Vault was down).")
@_one_line_errors
def shred(subject_id: str | None, pending: bool) -> None:
    """Crypto-shred SUBJECT_ID and print its signed deletion receipt (JSON)."""
    if bool(subject_id) == pending:
        raise click.UsageError("give either SUBJECT_ID or --pending")
    service = _service()
    try:
        if pending:
            outcome = service.complete_pending_shreds()
            for receipt in outcome.completed:
                click.echo(json.dumps(receipt.to_dict(), sort_keys=True))
            click.echo(
                f"completed {len(outcome.completed)} pending shred(s); "
                f"{len(outcome.pending)} still pending",
                err=True,
            )
            if outcome.pending:
                sys.exit(EXIT_UNAVAILABLE)
            return
        receipt = service.shred(str(subject_id))
        click.echo(json.dumps(receipt.to_dict(), sort_keys=True, indent=2))
    finally:
        service.close()


@main.command()
@click.option("--keep", is_flag=True, help="Keep the temporary directory (database, OpenBao log).")
@_one_line_errors
def demo(keep: bool) -> None:
    """The whole story on embedded defaults: managed OpenBao + SQLite in a temporary directory."""
    from api.demo import run_demo

    run_demo(click.echo, keep=keep)


if __name__ == "__main__":  # pragma: no cover
    main()
