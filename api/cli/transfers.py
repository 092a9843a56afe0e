"""``pii-vault transfers``: the transfer-basis registry and its report (policy §7), for
operators (direct database and Vault access, audited as operator events)."""

from __future__ import annotations

import datetime as dt
import json

import click

from access.transfers import BASES, report
from api.cli.base import _one_line_errors, _operator_event, _operator_name, _runtime


@click.group()
def transfers() -> None:
    """Legal bases for cross-border transfers (policy §7) and what crossed borders."""


@transfers.command("list")
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def transfers_list(as_json: bool) -> None:
    """Every recorded basis (revoked and ended ones included)."""
    with _runtime() as runtime:
        rows = [b.as_dict() for b in runtime.transfers.recorded()]
        bad = runtime.transfers.findings()
    if as_json:
        click.echo(json.dumps({"bases": rows, "failing_tags": bad}))
        return
    for r in rows:
        state = "revoked" if r["revoked_at"] else "recorded"
        who = r["subject_id"] or "everyone"
        click.echo(
            f"{r['id']}\t{r['destination']}\t{r['purpose']}\t{r['basis']}\t{r['reference']}"
            f"\t{who}\t{r['valid_from']}..{r['valid_until'] or ''}\t{state}"
        )
    for basis_id in bad:
        click.echo(f"{basis_id}\tFAILS ITS TAG (inserted or edited outside the vault): ignored")


@transfers.command("add")
@click.option("--to", "destination", required=True, help="Destination region, e.g. DE.")
@click.option("--basis", required=True, type=click.Choice(BASES))
@click.option("--reference", required=True, help="The agreement, assessment or filing.")
@click.option("--purpose", default="*", show_default=True)
@click.option("--subject", "subject_id", default=None, help="One subject (default: everyone).")
@click.option("--valid-from", type=click.DateTime(), default=None)
@click.option("--valid-until", type=click.DateTime(), default=None)
@_one_line_errors
def transfers_add(
    destination: str,
    basis: str,
    reference: str,
    purpose: str,
    subject_id: str | None,
    valid_from: dt.datetime | None,
    valid_until: dt.datetime | None,
) -> None:
    """Record a basis for transfers to DESTINATION."""
    with _runtime() as runtime:
        detail = {"to": destination.upper(), "basis": basis, "purpose": purpose}
        _operator_event(
            runtime, "transfers", [subject_id] if subject_id else [], "operator", detail
        )
        added = runtime.transfers.add(
            destination=destination,
            basis=basis,
            reference=reference,
            purpose=purpose,
            subject_id=subject_id,
            valid_from=valid_from.replace(tzinfo=dt.UTC) if valid_from else None,
            valid_until=valid_until.replace(tzinfo=dt.UTC) if valid_until else None,
            actor=_operator_name(),
        )
    click.echo(json.dumps(added.as_dict(), sort_keys=True))


@transfers.command("revoke")
@click.argument("basis_id", type=int)
@_one_line_errors
def transfers_revoke(basis_id: int) -> None:
    """Revoke basis BASIS_ID: transfers under it are refused from now on."""
    with _runtime() as runtime:
        _operator_event(runtime, "transfers", [], "operator", {"revoke": str(basis_id)})
        revoked = runtime.transfers.revoke(basis_id)
    click.echo(json.dumps(revoked.as_dict(), sort_keys=True))


@transfers.command("report")
@click.option("--since", type=click.DateTime(), required=True)
@_one_line_errors
def transfers_report(since: dt.datetime) -> None:
    """Transfers since SINCE by origin, destination, purpose and basis (counts only)."""
    stamp = since.replace(tzinfo=dt.UTC).isoformat(timespec="microseconds")
    with _runtime() as runtime:
        _operator_event(runtime, "transfers", [], "operator", {"report_since": stamp})
        out = report(runtime.audit.scan(since=stamp, containing='"transfer"'))
    click.echo(json.dumps({"since": stamp, **out}, sort_keys=True))
