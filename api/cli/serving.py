"""``pii-vault demo`` and ``pii-vault serve``."""

from __future__ import annotations

import logging
import signal
import sys

import click

from access.runtime import Runtime
from api.app import DEFAULT_MAX_BODY, AppConfig, create_app
from api.cli.base import (
    EXIT_ERROR,
    _one_line_errors,
    _runtime,
    stop_on_signals,
)
from api.console.auth import check_issuer
from api.console.config import ConsoleSettings, loopback_host
from api.logs import configure as configure_logging
from vault.config import Settings
from vault.errors import ConfigError

log = logging.getLogger(__name__)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


@click.command()
@click.option(
    "--keep",
    is_flag=True,
    help="Afterwards keep the API and the console running (Ctrl-C stops), and the directory.",
)
@_one_line_errors
def demo(keep: bool) -> None:
    """The whole story on embedded defaults: managed OpenBao + SQLite in a temporary directory.

    OpenBao is also the console's identity provider: with --keep, open the printed
    console address and sign in as one of the people it prints."""
    from api.demo.story import run_demo

    stop_on_signals()
    if not run_demo(click.echo, keep=keep).ok:
        sys.exit(EXIT_ERROR)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes of the production server (threaded, slow clients bounded).",
)
@click.option(
    "--server",
    type=click.Choice(["gunicorn", "granian"]),
    default="gunicorn",
    show_default=True,
    help="gunicorn bounds slow request bodies; granian (faster, docs/BENCHMARKS.md) does "
    "not: use it only behind a proxy that buffers whole requests.",
)
@click.option(
    "--dev",
    is_flag=True,
    help="Werkzeug's development server instead: one process, for local trials only.",
)
@click.option(
    "--max-body",
    default=DEFAULT_MAX_BODY,
    show_default=True,
    type=click.IntRange(1024, 64 * 1024 * 1024),
    help="Request body limit in bytes.",
)
@click.option(
    "--allow-local-keys",
    is_flag=True,
    help="Serve off loopback with the local key provider or a root Vault token anyway "
    "(both are for development: refused without this flag).",
)
@_one_line_errors
def serve(
    host: str,
    port: int,
    workers: int,
    server: str,
    dev: bool,
    max_body: int,
    allow_local_keys: bool,
) -> None:
    """Serve the HTTP API with the production server (``--dev``: the development server).
    Configuration is checked before the first request is taken."""
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    with _runtime(settings) as runtime:  # bad configuration fails here, in one line
        runtime.check()
        runtime.verify_vault_auth()
        runtime.policy.current()
        runtime.check_schema_covers_data()
        _check_exposure(runtime, settings, host, allow_local_keys)
        if runtime.principals.tokens is not None:  # the service-token issuer answers
            runtime.principals.tokens.check_reachable()
        runtime.audit.check_extends_anchors()  # never anchor a history this service did not write
        if dev:
            # SIGTERM ends the development server through the `with` above, so the runtime
            # closes and anchors its tail (gunicorn workers do it in `worker_exit`).
            signal.signal(signal.SIGTERM, _stop)
            runtime.start_maintenance()
            config = AppConfig(settings=settings, max_body_bytes=max_body, runtime=runtime)
            app = create_app(config)
            click.echo(f"pii-vault serving on http://{host}:{port} (development server)", err=True)
            app.run(host=host, port=port, threaded=True, use_reloader=False)
            return
    # Each worker process opens its own connections.
    from api.server import run_granian, run_gunicorn

    run = run_granian if server == "granian" else run_gunicorn
    run(host, port, workers, max_body, settings)


def _check_exposure(runtime: Runtime, settings: Settings, host: str, allow: bool) -> None:
    """Start-up checks a served deployment must pass (issue 23: each was accepted
    silently): the read budgets and the console's role map name roles the policy knows;
    off loopback, keys are not in the local provider (beside the database) nor used with
    a root token."""
    known = runtime.policy.known_roles()
    budgeted = sorted(set(settings.read_budget_roles) - known)
    if budgeted:
        raise ConfigError(
            f"PII_VAULT_READ_BUDGET_ROLES names unknown role(s): {', '.join(budgeted)}"
        )
    console = ConsoleSettings.from_env()
    if console is not None:
        unknown = sorted(set(console.role_map.values()) - known)
        if unknown:
            raise ConfigError(
                f"PII_VAULT_CONSOLE_ROLE_MAP names unknown role(s): {', '.join(unknown)}"
            )
        check_issuer(console.issuer)  # a console whose people cannot sign in: exit 3
    if loopback_host(host):
        return
    problems = []
    if settings.keys.kind == "local":
        problems.append("the local key provider keeps keys beside the database")
    if runtime.vault_token_is_root():
        problems.append("the Vault token is a root token")
    if not problems:
        return
    message = f"serving on {host}: {'; '.join(problems)} (development set-ups only)"
    if not allow:
        raise ConfigError(f"{message}; use transit with a service token, or --allow-local-keys")
    log.warning("%s: allowed by --allow-local-keys", message)
