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
@click.option(
    "--reason",
    default=None,
    help="Why the subject is erased (required with SUBJECT_ID; audited, as the API's).",
)
@_one_line_errors
def shred(subject_id: str | None, pending: bool, reason: str | None) -> None:
    """Crypto-shred SUBJECT_ID and print its signed deletion receipt (JSON)."""
    if bool(subject_id) == pending:
        raise click.UsageError("give either SUBJECT_ID or --pending")
    if subject_id and not (reason or "").strip():
        raise click.UsageError("an erasure needs --reason (it is audited)")
    if reason is not None and (len(reason) > 500 or not reason.isprintable()):
        raise click.UsageError("--reason is one printable line of at most 500 characters")
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
        _operator_event(
            runtime, "shred", [str(subject_id)], "operator", {"reason": str(reason).strip()}
        )
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


@click.group()
def receipt() -> None:
    """Deletion receipts: verify one, or print the key that verifies them."""


@receipt.command("public-key")
@_one_line_errors
def receipt_public_key() -> None:
    """Print the vault's Ed25519 public key (base64): the trust anchor for receipts. Pin it
    somewhere the vault cannot change; a receipt's own public_key field is informational."""
    import base64

    with _runtime() as runtime:
        key = runtime.backend.signing_public_key()
    click.echo(base64.b64encode(key).decode())


@receipt.command("verify")
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--public-key",
    "public_key",
    default=None,
    help="The pinned key (base64) to verify against, without opening the vault.",
)
@_one_line_errors
def receipt_verify(path: str, public_key: str | None) -> None:
    """Verify the deletion receipt in PATH (JSON, '-' for stdin): its signature under the
    vault's key and, opening the vault, that the shred is published and the subject key is
    gone. Exit 0: verified; 1: not."""
    import base64
    import binascii

    from vault.receipts import verify_receipt

    with click.open_file(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except ValueError:
            raise click.UsageError(f"{path} is not JSON") from None
    if not isinstance(data, dict) or "subject_id" not in data:
        raise click.UsageError(f"{path} is not a deletion receipt")
    if public_key is not None:
        try:
            key = base64.b64decode(public_key, validate=True)
        except (binascii.Error, ValueError):
            raise click.UsageError("--public-key is not base64") from None
        ok, how = verify_receipt(data, key), "signature under the given key"
    else:
        with _runtime() as runtime:
            ok = runtime.shredder.confirm(data)
        how = "signature, published shred and destroyed key"
    if not ok:
        click.echo(f"NOT verified: {data.get('subject_id')} ({how})", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"verified: {data['subject_id']} ({how})")
