"""``pii-vault demo`` and ``pii-vault serve``."""

from __future__ import annotations

import signal
import sys

import click

from api.app import DEFAULT_MAX_BODY, AppConfig, create_app
from api.cli.base import (
    EXIT_ERROR,
    _one_line_errors,
    _runtime,
    stop_on_signals,
)
from vault.config import Settings


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
@_one_line_errors
def serve(host: str, port: int, workers: int, server: str, dev: bool, max_body: int) -> None:
    """Serve the HTTP API with the production server (``--dev``: the development server).
    Configuration is checked before the first request is taken."""
    settings = Settings.from_env()
    with _runtime(settings) as runtime:  # bad configuration fails here, in one line
        runtime.check()
        runtime.policy.current()
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
