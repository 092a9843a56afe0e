"""``pii-vault seal-records``: the one-time step of an upgrade to tagged consent and
restriction rows (migration a0009). Rows written before carry no tag and count for
nothing (a consent not in force, a restriction in force) until an operator seals them."""

from __future__ import annotations

import click

from api.cli_base import _one_line_errors, _operator_event, _runtime


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
