"""Shredding by operators: one subject, the pending ones, the deactivated ones."""

from __future__ import annotations

import json
import sys

import click

from api.cli.base import (
    EXIT_ERROR,
    EXIT_UNAVAILABLE,
    _one_line_errors,
    _operator_event,
    _runtime,
    _shreds_completed,
)
from vault.config import Settings


@click.command()
@click.argument("subject_id", required=False)
@click.option("--pending", is_flag=True, help="Complete every shred left pending (Vault was down).")
@_one_line_errors
def shred(subject_id: str | None, pending: bool) -> None:
    """Crypto-shred SUBJECT_ID and print its signed deletion receipt (JSON)."""
    if bool(subject_id) == pending:
        raise click.UsageError("give either SUBJECT_ID or --pending")
    with _runtime() as runtime:
        shredder = runtime.shredder
        if pending:
            _operator_event(runtime, "shred", shredder.pending(), "operator")
            outcome = shredder.complete_pending()
            # Shreds that finished but whose "completed" event was never recorded (the audit
            # log failed after the key was destroyed) are recorded here too.
            _shreds_completed(
                runtime, [r.subject_id for r in outcome.completed] + shredder.unaudited()
            )
            for receipt in outcome.completed:
                click.echo(json.dumps(receipt.to_dict(), sort_keys=True))
            click.echo(
                f"completed {len(outcome.completed)} pending shred(s); "
                f"{len(outcome.pending)} still pending",
                err=True,
            )
            for subject_id in outcome.undecided:
                click.echo(
                    f"NOT completed: {subject_id} is marked shredding but no shred was decided "
                    "(nothing published outside the database: set with SQL?); its key is kept",
                    err=True,
                )
            if outcome.undecided:
                _operator_event(runtime, "shred_refused", outcome.undecided, "deny")
            if outcome.pending:
                sys.exit(EXIT_UNAVAILABLE)
            if outcome.undecided:
                sys.exit(EXIT_ERROR)
            return
        _operator_event(runtime, "shred", [str(subject_id)], "operator")
        receipt = shredder.shred(str(subject_id))  # consents go with it (on_shredded)
        _shreds_completed(runtime, [receipt.subject_id])
        click.echo(json.dumps(receipt.to_dict(), sort_keys=True, indent=2))


@click.command("shred-deactivated")
@_one_line_errors
def shred_deactivated() -> None:
    """Shred every subject deactivated more than PII_VAULT_DEACTIVATION_GRACE_DAYS ago and
    not reactivated (policy §5); prints each signed receipt (JSON). Run it daily."""
    import datetime as dt

    settings = Settings.from_env()
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.deactivation_grace_days)
    with _runtime() as runtime:
        restrictions = runtime.decider.restrictions
        due = restrictions.deactivated_before(cutoff) if restrictions is not None else []
        shredded = 0
        for subject_id in due:
            if runtime.vault.status(subject_id) != "active":
                continue
            _operator_event(runtime, "shred", [subject_id], "operator", {"why": "deactivated"})
            receipt = runtime.shredder.shred(subject_id)
            _shreds_completed(runtime, [receipt.subject_id])
            click.echo(json.dumps(receipt.to_dict(), sort_keys=True))
            shredded += 1
    click.echo(f"shredded {shredded} deactivated subject(s) past the grace period", err=True)
