"""The jobs cron runs: reconcile, purge-expired, age-out, reindex."""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from api.cli.base import (
    EXIT_ERROR,
    _duration,
    _one_line_errors,
    _operator_event,
    _runtime,
    _shreds_completed,
)
from vault.config import Settings
from vault.errors import ConfigError


@click.command()
@click.option("--dry-run", is_flag=True, help="Report only; change nothing.")
@click.option(
    "--grace",
    type=click.IntRange(0),
    default=None,
    help="Seconds a key without a row may be in flight (default PII_VAULT_ORPHAN_GRACE). "
    "0 only when no server is running.",
)
@_one_line_errors
def reconcile(dry_run: bool, grace: int | None) -> None:
    """Make the database and the key provider agree (run from cron; exit 1 means alert).

    Destroys subject keys without rows older than PII_VAULT_ORPHAN_GRACE, marks active
    subjects whose key is missing `damaged`, completes stuck shreds and records missing
    shred-completion events. Prints a JSON report.
    """
    with _runtime() as runtime:
        if not dry_run:
            _operator_event(runtime, "reconcile", [], "operator")
        if grace is not None:
            runtime.orphan_grace = float(grace)
        report = runtime.reconciler().run(dry_run=dry_run)
        if not dry_run:
            _shreds_completed(
                runtime,
                report.shreds_completed + report.shreds_unaudited + report.shreds_reapplied,
            )
            detail = {
                "orphan_keys_destroyed": str(len(report.orphan_keys)),
                "subjects_marked_damaged": str(len(report.newly_damaged)),
                "shreds_completed": str(len(report.shreds_completed)),
            }
            _operator_event(runtime, "reconcile", report.newly_damaged, "completed", detail)
    click.echo(json.dumps(report.to_dict(), sort_keys=True, indent=2))
    if report.broken:
        sys.exit(EXIT_ERROR)


@click.command("purge-expired")
@_one_line_errors
def purge_expired() -> None:
    """Delete field values past their retention period (policy §4) now. A serving process
    does this in its maintenance tick; each batch is audited with its subjects and fields."""
    with _runtime() as runtime:
        count = runtime.purge_expired("operator", batches=1_000_000)
    click.echo(f"purged {count} expired field value(s)")


@click.command("age-out")
@_one_line_errors
def age_out() -> None:
    """Clear the minor flag of subjects whose stored date of birth says they have come of
    age (policy §6); run it daily from cron. Each one is audited."""
    with _runtime() as runtime:
        attributes = runtime.guard.attributes
        due = attributes.come_of_age()
        done = []
        for subject_id in due:
            _operator_event(runtime, "minor_aged_out", [subject_id], "operator")
            if attributes.age_out(subject_id):
                _operator_event(runtime, "minor_aged_out", [subject_id], "completed")
                done.append(subject_id)
    click.echo(f"aged out {len(done)} subject(s) at majority")


def _privileged(job: str) -> Settings:
    """The jobs that need an operator's token use VAULT_TOKEN when it is set, even beside
    the service's AppRole settings (which otherwise win): an operator running it from the
    service's environment meant their own token (issue 23). Says which it uses."""
    settings = Settings.from_env()
    keys = settings.keys
    if keys.kind != "transit":
        return settings
    if keys.vault_token and keys.uses_approle:
        click.echo(f"vault: {job} uses VAULT_TOKEN (the AppRole settings are ignored)", err=True)
        keys = dataclasses.replace(
            keys, role_id=None, secret_id=None, role_id_file=None, secret_id_file=None
        )
        return dataclasses.replace(settings, keys=keys)
    used = "AppRole (VAULT_ROLE_ID)" if keys.uses_approle else "VAULT_TOKEN"
    click.echo(f"vault: {job} uses {used}", err=True)
    return settings


@click.command()
@_one_line_errors
def reindex() -> None:
    """Re-key the blind index and retire the old key versions (run from cron after shreds).

    Needs a privileged VAULT_TOKEN (the service's may not rotate or trim the index key).
    Afterwards no digest in an older copy of the database can be confirmed by anyone.
    """
    from keys.provider import IndexKeyAdmin
    from vault.reindex import reindex as run_reindex

    with _runtime(_privileged("reindex")) as runtime:
        if not isinstance(runtime.backend, IndexKeyAdmin):
            raise ConfigError("this key provider cannot rotate index keys")
        runtime.own_mounts()
        _operator_event(runtime, "reindex", [], "operator")
        report = run_reindex(runtime.vault, runtime.backend)
        _operator_event(runtime, "reindex", [], "completed")
    click.echo(
        f"reindexed {report.digests} digest(s) of {report.subjects} subject(s) under index-key "
        f"version {report.version}; older versions retired"
    )


# -- subject keys ---------------------------------------------------------------------


@click.command("rotate-keys")
@click.option(
    "--older-than",
    default="90d",
    show_default=True,
    help="Rotate subject keys whose newest version is older than this (90d, 12h, 0s).",
)
@click.option("--subject", "subject_id", default=None, help="Only this subject.")
@_one_line_errors
def rotate_keys(older_than: str, subject_id: str | None) -> None:
    """Rotate subject keys in Vault, rewrap their data keys, trim the old versions.

    Resumable (a re-run skips what is done and trims what a crash left untrimmed),
    audited per batch, with a progress bar on a terminal. Tokens keep resolving."""
    from tqdm import tqdm

    from vault.key_rotation import KeyRotator

    age = _duration(older_than)
    with _runtime(_privileged("rotate-keys")) as runtime:
        runtime.own_mounts()
        rotator = KeyRotator(runtime.vault)
        with tqdm(unit="subject", disable=not sys.stderr.isatty()) as bar:
            report = rotator.run(
                age,
                subject_id=subject_id,
                progress=bar.update,
                before_batch=lambda ids: _operator_event(
                    runtime, "key_rotation", ids, "operator", {"older_than": older_than}
                ),
                after_batch=lambda ids: _operator_event(runtime, "key_rotation", ids, "completed"),
            )
    click.echo(
        f"rotated {len(report.rotated)} subject key(s); {report.current} current; "
        f"{len(report.failed)} failed"
        + "".join(f"\n  {sid}: {code}" for sid, code in sorted(report.failed.items()))
    )
    if report.failed:
        sys.exit(EXIT_ERROR)
