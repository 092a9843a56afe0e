"""``pii-vault principal``: services and people, their keys and roles."""

from __future__ import annotations

import datetime as dt
import json

import click

from api.cli.base import (
    _duration,
    _one_line_errors,
    _operator_name,
    _runtime,
)
from vault.models import iso


@click.group()
def principal() -> None:
    """Manage principals (services and people) and their API keys."""


@principal.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, help="A role from the policy.")
@click.option(
    "--region",
    default=None,
    help="Where it works from (policy §7); default PII_VAULT_DEPLOYMENT_REGION.",
)
@click.option(
    "--kind",
    type=click.Choice(["internal", "processor", "controller", "affiliate", "authority"]),
    default="internal",
    show_default=True,
    help="Who receives what it reads (policy §3(1)).",
)
@click.option("--recipient", default=None, help="The recipient's name (not internal).")
@click.option("--country", default=None, help="The recipient's country, e.g. SG.")
@click.option("--agreement", default=None, help="The agreement it acts under (a processor's DPA).")
@click.option("--expires", default=None, help="The key stops working after this (90d, 12h).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_one_line_errors
def principal_create(
    name: str,
    roles: tuple[str, ...],
    region: str | None,
    kind: str,
    recipient: str | None,
    country: str | None,
    agreement: str | None,
    expires: str | None,
    as_json: bool,
) -> None:
    """Create NAME (svc:... or user:...) and print its API key once; only a hash is stored."""
    from access.facts import Recipient

    who = Recipient(kind, recipient, country, agreement)
    with _runtime() as runtime:
        info, key = runtime.principals.create(
            name,
            list(roles),
            _operator_name(),
            region=region,
            recipient=who,
            expires=_lifetime(expires),
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": info.name,
                    "roles": list(info.roles),
                    "region": info.region,
                    "api_key": key,
                }
            )
        )
    else:
        click.echo(f"created {info.name} with roles {', '.join(info.roles)}")
        click.echo(f"API key (shown once, store it now): {key}")


@principal.command("list")
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def principal_list(as_json: bool) -> None:
    """List principals (never their keys)."""
    with _runtime() as runtime:
        principals = runtime.principals.list()
    rows = [
        {
            "name": p.name,
            "roles": list(p.roles),
            "disabled": p.disabled,
            "created_at": iso(p.created_at),
            "region": p.region,
        }
        for p in principals
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        state = "disabled" if row["disabled"] else "active"
        click.echo(f"{row['name']:<32} {state:<9} {','.join(row['roles'])}")  # type: ignore[arg-type]


@principal.command("disable")
@click.argument("name")
@_one_line_errors
def principal_disable(name: str) -> None:
    """Disable NAME: its key stops working and its grants vanish at once."""
    with _runtime() as runtime:
        runtime.principals.disable(name, _operator_name())
    click.echo(f"disabled {name}")


@principal.command("enable")
@click.argument("name")
@_one_line_errors
def principal_enable(name: str) -> None:
    """Re-enable NAME (refused if its row was edited outside the vault)."""
    with _runtime() as runtime:
        runtime.principals.enable(name, _operator_name())
    click.echo(f"enabled {name}")


@principal.command("rotate-key")
@click.argument("name")
@click.option(
    "--overlap",
    default="24h",
    show_default=True,
    help="How long the current key keeps working beside the new one (0s: it stops now).",
)
@click.option("--expires", default=None, help="The new key stops working after this (90d).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_one_line_errors
def principal_rotate_key(name: str, overlap: str, expires: str | None, as_json: bool) -> None:
    """A new API key for NAME, printed once; the old one works for the overlap, then never."""
    window = dt.timedelta(seconds=_duration(overlap))
    with _runtime() as runtime:
        key, until = runtime.principals.rotate_key(
            name, _operator_name(), overlap=window, expires=_lifetime(expires)
        )
    ends = until.isoformat(timespec="seconds").replace("+00:00", "Z") if until else None
    if as_json:
        click.echo(json.dumps({"name": name, "api_key": key, "old_key_until": ends}))
    else:
        old = f"works until {ends}" if ends else "no longer works"
        click.echo(f"rotated the key of {name}; the old key {old}")
        click.echo(f"API key (shown once, store it now): {key}")


def _lifetime(text: str | None) -> dt.timedelta | None:
    return None if text is None else dt.timedelta(seconds=_duration(text))


# -- audit and policy -------------------------------------------------------------------------
