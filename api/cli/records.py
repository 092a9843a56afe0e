"""Operator commands over the vault's records: ``seal-records`` (the one-time step of an
upgrade to tagged consent and restriction rows, migration a0009: rows written before
carry no tag and count for nothing until an operator seals them) and ``breach-scope``
(what one principal saw in a window, from the audit log)."""

from __future__ import annotations

import datetime as dt
import json

import click

from api.cli.base import _one_line_errors, _operator_event, _runtime


@click.command("seal-records")
@_one_line_errors
def seal_records() -> None:
    """Tag the consent and restriction rows that have no tag yet (run once after upgrading;
    a row with a wrong tag stays refused). Audited."""
    with _runtime() as runtime:
        _operator_event(runtime, "admin", [], "operator", {"seal_records": "untagged"})
        consents = runtime.consents.seal_untagged()
        restrictions = runtime.decider.restrictions
        sealed = restrictions.seal_untagged() if restrictions is not None else 0
        _operator_event(
            runtime,
            "admin",
            [],
            "completed",
            {"sealed_consents": str(consents), "sealed_restrictions": str(sealed)},
        )
    click.echo(f"sealed {consents} consent(s) and {sealed} restriction(s)")


@click.command("breach-scope")
@click.option("--principal", required=True, help="e.g. svc:checkout or user:<sub>")
@click.option("--since", type=click.DateTime(), required=True)
@click.option("--until", type=click.DateTime(), default=None)
@_one_line_errors
def breach_scope(principal: str, since: dt.datetime, until: dt.datetime | None) -> None:
    """What PRINCIPAL read between SINCE and UNTIL (UTC): subjects, fields (plain and
    masked), regions and minors touched, as JSON. Subject ids and counts, never a value."""
    from access.breach_scope import scope

    def stamp(moment: dt.datetime) -> str:
        return moment.replace(tzinfo=dt.UTC).isoformat(timespec="microseconds")

    with _runtime() as runtime:
        detail = {"principal": principal[:128], "since": stamp(since)}
        _operator_event(runtime, "audit_read", [], "operator", {"breach_scope": json.dumps(detail)})
        events = runtime.audit.scan(
            since=stamp(since), principal=principal, until=stamp(until) if until else None
        )
        report = scope(events, runtime.vault.engine)
    click.echo(json.dumps({"principal": principal, **report}, sort_keys=True))
