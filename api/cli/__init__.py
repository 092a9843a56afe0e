"""The ``pii-vault`` command line: one module per command group (issue 22 split the one
file of 700 lines); this module only assembles them.

Errors print one clear line and exit non-zero, never a traceback (``api/cli/base.py``).
"""

from __future__ import annotations

import os

import click

from api.cli.audit import audit
from api.cli.base import EXIT_CONFIG, EXIT_ERROR, EXIT_UNAVAILABLE
from api.cli.imports import import_subjects
from api.cli.policy import policy
from api.cli.principals import principal
from api.cli.records import breach_scope, seal_records
from api.cli.serving import demo, serve
from api.cli.setup import init, init_shard
from api.cli.shreds import receipt, shred, shred_deactivated
from api.cli.transfers import transfers
from api.cli.upkeep import age_out, purge_expired, reconcile, reindex, rotate_keys
from api.logs import configure_from_env

__all__ = [
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_UNAVAILABLE",
    "main",
    "run",
]  # the exit codes callers test


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pii-vault", prog_name="pii-vault")
def main() -> None:
    """pii-vault: encrypted personal-data vault with crypto-shredding.

    Configured by PII_VAULT_HOME, PII_VAULT_DATABASE_URL, PII_VAULT_KEY_PROVIDER
    (local|transit), VAULT_ADDR and VAULT_TOKEN.
    """


for command in (
    init,
    init_shard,
    shred,
    shred_deactivated,
    receipt,
    demo,
    serve,
    reconcile,
    purge_expired,
    age_out,
    reindex,
    rotate_keys,
    principal,
    audit,
    policy,
    transfers,
    seal_records,
    breach_scope,
    import_subjects,
):
    main.add_command(command)


def run() -> None:
    """The console script: logging configured first (api/logs.py; commands log warnings
    and errors, ``serve`` INFO too: a command prints its own report), then the command."""
    configure_from_env(os.environ, "WARNING")
    main()
