"""Production serving under gunicorn: each worker builds its own app after the fork."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from api.app import AppConfig, create_app
from api.context import EXTENSION
from api.edge import PrereadWorker
from vault.config import Settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], max_body: int) -> None:
        self.options = options
        self.max_body = max_body
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(AppConfig(max_body_bytes=self.max_body))


def gunicorn_options(host: str, port: int, workers: int, settings: Settings) -> dict[str, Any]:
    """Threaded workers: a request waiting on Vault or the database does not block the
    worker's other threads, so ``/healthz`` answers while dependencies hang. Every wait
    is bounded below ``worker_timeout`` (``Settings.checked``). A request gets a thread
    only once it has arrived whole (``api/edge.py``): slow clients hold no thread."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "api.edge.PrereadWorker",
        "threads": settings.worker_threads,
        "timeout": settings.worker_timeout,
        "graceful_timeout": settings.worker_timeout,
    }


def _worker_exit(server: Any, worker: Any) -> None:
    """A worker stopping gracefully closes its runtime: its unanchored audit tail is anchored."""
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get(EXTENSION) if app is not None else None
    if runtime is not None:
        runtime.close()


def run_gunicorn(host: str, port: int, workers: int, max_body: int, settings: Settings) -> None:
    # Set in the master, inherited by every forked worker.
    PrereadWorker.read_timeout = settings.request_read_timeout
    PrereadWorker.max_reading = settings.max_reading_connections
    PrereadWorker.max_body = max_body
    _Gunicorn(
        {
            **gunicorn_options(host, port, workers, settings),
            "preload_app": False,  # no shared connections or keys across the fork
            "worker_exit": _worker_exit,
            "accesslog": "-",
            # The access log records paths and statuses only: never query strings or bodies.
            "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s',
        },
        max_body,
    ).run()
