"""``pii-vault policy``: the rules, and why a request would be allowed or refused."""

from __future__ import annotations

import json
import sys

import click

from access.policy import Rule
from api.cli.base import (
    EXIT_ERROR,
    F,
    _one_line_errors,
    _operator_event,
    _operator_name,
    _runtime,
)
from vault.errors import ConfigError


@click.group()
def policy() -> None:
    """The access policy."""


@policy.command("list")
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def policy_list(as_json: bool) -> None:
    """Print every rule in force, in Casbin's CSV form."""
    with _runtime() as runtime:
        rules = runtime.policy.rules()
    if as_json:
        click.echo(json.dumps([vars(r) for r in rules]))
        return
    for rule in rules:
        click.echo(str(rule))


def _rule(sub: str, obj: str, act: str, purpose: str, deny: bool) -> Rule:
    return Rule(sub, obj, act, purpose, "deny" if deny else "allow")


def _rule_arguments(fn: F) -> F:
    """SUBJECT OBJECT ACTION PURPOSE [--deny]: one policy rule on the command line."""
    for decorator in reversed(
        [
            click.argument("subject"),
            click.argument("obj", metavar="OBJECT"),
            click.argument("action"),
            click.argument("purpose"),
            click.option("--deny", is_flag=True, help="A deny rule (deny always wins)."),
        ]
    ):
        fn = decorator(fn)
    return fn


@policy.command("add")
@_rule_arguments
@click.option(
    "--new-role",
    is_flag=True,
    help="SUBJECT is a role no rule names yet (without it, an unknown role is refused: "
    "a typo would otherwise create a role nobody holds).",
)
@_one_line_errors
def policy_add(
    subject: str, obj: str, action: str, purpose: str, deny: bool, new_role: bool
) -> None:
    """Add a rule (checked first: a bad rule changes nothing); takes effect in every worker."""
    rule = _rule(subject, obj, action, purpose, deny)
    with _runtime() as runtime:
        known = runtime.policy.known_roles()
        if subject != "*" and subject not in known and not new_role:
            raise ConfigError(
                f"unknown role {subject!r} (known: {', '.join(sorted(known))}); to create a "
                "role, add --new-role"
            )
        _operator_event(runtime, "admin", [], "operator", {"policy_add": str(rule)})
        runtime.policy.add_rules([rule], _operator_name())
    click.echo(f"added: {rule}")


@policy.command("remove")
@_rule_arguments
@_one_line_errors
def policy_remove(subject: str, obj: str, action: str, purpose: str, deny: bool) -> None:
    """Remove a rule; takes effect in every worker at their next request."""
    rule = _rule(subject, obj, action, purpose, deny)
    with _runtime() as runtime:
        _operator_event(runtime, "admin", [], "operator", {"policy_remove": str(rule)})
        removed = runtime.policy.remove_rule(rule, _operator_name())
    if not removed:
        click.echo(f"pii-vault: error: no such rule: {rule}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"removed: {rule}")


@policy.command("explain")
@click.argument("principal_name", metavar="PRINCIPAL")
@click.argument("field")
@click.argument("action")
@click.argument("purpose")
@click.option(
    "--subject",
    "subject_id",
    default=None,
    help="Also decide for this subject: which condition (restriction, transfer, minors, "
    "consent, sensitive) decides, if one does.",
)
@_one_line_errors
def policy_explain(
    principal_name: str, field: str, action: str, purpose: str, subject_id: str | None
) -> None:
    """Print the decision for PRINCIPAL FIELD ACTION PURPOSE, the rule that decided it and
    every condition such a request must also pass."""
    from access.facts import SubjectFacts
    from access.policy import ACTIONS, PURPOSELESS
    from access.purposes import Justification

    if action not in ACTIONS:
        raise click.UsageError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    request_purpose = None if action in PURPOSELESS else purpose
    with _runtime() as runtime:
        decider = runtime.decider
        if field != "*" and field not in decider.field_categories:
            raise click.UsageError(f"unknown field {field!r}")
        known = {p.name: p for p in runtime.principals.list()}
        if principal_name not in known:
            raise click.UsageError(f"unknown principal {principal_name!r}")
        region = known[principal_name].region
        decision = decider.decide(principal_name, [field], action, request_purpose, gates=False)
        spec = None if request_purpose is None else decider._purpose(action, request_purpose)
        conditions = decider.explain(action, request_purpose)
        gated = None
        if subject_id is not None:
            info = runtime.vault.describe(subject_id)
            facts = SubjectFacts(info.subject_id, info.is_minor, info.region)
            # As if justified: the question is what the conditions say of this subject.
            assumed = Justification("EXPLAIN-1", "policy explain") if spec else None
            gated = decider.decide(
                principal_name, [field], action, request_purpose, facts, assumed, region=region
            )
    (only,) = decision.fields.values()
    click.echo(f"decision: {only.redaction}" + (f" ({only.reason})" if only.reason else ""))
    click.echo(f"rule: {only.rule or '(no rule matched: default deny)'}")
    if spec is not None and spec.requires_justification:
        click.echo(f"note: purpose {purpose} also needs a justification per request")
    if only.redaction != "denied":
        for name, line in conditions:
            click.echo(f"condition {name}: {line}")
    if gated is not None:
        (one,) = gated.fields.values()
        if one.visible:
            click.echo(f"for subject {subject_id}: {one.redaction} (every condition passed)")
        else:
            by = one.by or ("justification" if one.reason == "justification_required" else "policy")
            click.echo(f"for subject {subject_id}: denied ({one.reason}) by {by}")
    if action == "reveal" and only.redaction == "plain":
        usage = runtime.usage
        click.echo(
            f"note: each person may reveal at most {usage.reveals_per_day} subjects per purpose "
            "per day (reveal_budget_spent beyond)"
            + (
                "; the ticket must be open and assigned to them (ticket_rejected)"
                if runtime.guard.tickets is not None
                else ""
            )
        )
