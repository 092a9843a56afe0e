"""Production serving under gunicorn: each worker builds its own app after the fork."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from api.app import AppConfig, create_app


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


def run_gunicorn(host: str, port: int, workers: int, max_body: int) -> None:
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "preload_app": False,  # no shared connections or keys across the fork
            "accesslog": "-",
            # The access log records paths and statuses only: never query strings or bodies.
            "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s',
        },
        max_body,
    ).run()
