"""Production serving: each worker process builds its own app (no connections or keys
shared across processes).

gunicorn with the pre-reading worker (``api/edge.py``) is the default: a request
reaches a Python thread only once its head *and body* have arrived, within the read
timeout. Granian (issue 21's evaluation, docs/BENCHMARKS.md) is faster per request
and bounds slow request heads in its Rust runtime, but its WSGI interface reads the
body on the Python thread: a client trickling a body holds a thread until it is done
(tests/test_slow_clients.py shows both). So Granian is opt-in (``--server granian``),
for deployments behind a proxy that buffers whole requests. Both keep ``/healthz``
answering while a dependency hangs (the lanes, ``keys/bounded.py``) and close each
worker's runtime when it stops (its unanchored audit tail is anchored)."""

from __future__ import annotations

import atexit
import multiprocessing.util
import os
import threading
from typing import Any

from gunicorn.app.base import BaseApplication

from api.app import AppConfig, create_app
from api.context import EXTENSION
from api.edge import PrereadWorker
from api.logs import configure as configure_logging
from api.logs import log_config
from api.metrics import prepare_multiprocess
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
    prepare_multiprocess()  # /metrics sums every worker's counters
    _Gunicorn(
        {
            **gunicorn_options(host, port, workers, settings),
            "preload_app": False,  # no shared connections or keys across the fork
            "worker_exit": _worker_exit,
            # One handler and format for gunicorn's own lines and ours; the access log is
            # the app's request line (api/app.py: route, status, principal, cause).
            "logconfig_dict": log_config(settings.log_format, settings.log_level),
            "accesslog": None,
        },
        max_body,
    ).run()


SERVERS = ("granian", "gunicorn")
_MAX_BODY_ENV = "PII_VAULT_SERVE_MAX_BODY"  # passed to Granian's worker processes


def granian_app() -> Any:
    """Granian's factory, called once in each worker process. A worker stopping closes
    its runtime (anchoring its tail): Granian's workers are ``multiprocessing``
    processes, which end through ``os._exit`` after their finalizers, never ``atexit``."""
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(AppConfig(settings=settings, max_body_bytes=int(os.environ[_MAX_BODY_ENV])))
    runtime = app.extensions[EXTENSION]
    closed = threading.Lock()

    def close() -> None:
        if closed.acquire(blocking=False):
            runtime.close()

    multiprocessing.util.Finalize(None, close, exitpriority=10)
    atexit.register(close)  # the same, should a worker ever run outside multiprocessing
    return app


def run_granian(host: str, port: int, workers: int, max_body: int, settings: Settings) -> None:
    """Granian reads every request in its Rust runtime (no Python thread per connection)
    and hands it to one of ``worker_threads`` blocking threads; a request head must
    arrive within ``request_read_timeout``; at most ``worker_threads * 4`` requests
    are admitted per worker (backpressure), the rest wait in the listen backlog."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    os.environ[_MAX_BODY_ENV] = str(max_body)
    prepare_multiprocess()  # /metrics sums every worker's counters
    Granian(
        "api.server:granian_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=settings.worker_threads,
        backpressure=settings.max_reading_connections,
        http1_settings=HTTP1Settings(header_read_timeout=int(settings.request_read_timeout * 1000)),
        workers_kill_timeout=settings.worker_timeout,
        respawn_failed_workers=True,
        log_dictconfig=log_config(settings.log_format, settings.log_level),
        log_access=False,  # the app's own request line (api/app.py)
    ).serve()
