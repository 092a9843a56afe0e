"""Logs an on-call engineer can use (issue 23, finding 2).

Before, logging was never configured: warnings printed as bare lines, INFO never
appeared, the access log had no time or principal, and an unexpected error logged
only its type. Now every process (``serve``'s workers and master, every command)
logs through one handler: a timestamp (RFC 3339, UTC), level, process, logger, the
message, and inside a request its id and principal — as text, or one JSON object per
line with ``PII_VAULT_LOG_FORMAT=json``. A traceback is logged as its frames and
exception type only: an exception's message or locals may hold a value (a KeyError
names its key), and nothing in a log may.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
from collections.abc import Mapping
from typing import Any

from flask import g, has_request_context

from vault.config import LOG_FORMATS, LOG_LEVELS
from vault.errors import frames

_FIELDS = ("request_id", "principal", "method", "route", "status", "duration_ms", "cause")


class RequestContext(logging.Filter):
    """Adds the request's id and principal to every record logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            if getattr(record, "request_id", None) is None:
                record.request_id = getattr(g, "request_id", None)
            if getattr(record, "principal", None) is None:
                principal = getattr(g, "principal", None)
                record.principal = getattr(principal, "name", None)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    when = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(exc_info: Any) -> str | None:
    if not exc_info or exc_info[0] is None:
        return None
    return f"{exc_info[0].__name__} at {frames(exc_info[2])}"


_ONE_LINE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c != 0x09}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record)} {record.levelname} [{record.process}] {record.name}: "
            f"{record.getMessage()}"
        )
        extra = " ".join(
            f"{name}={getattr(record, name)}"
            for name in _FIELDS
            if getattr(record, name, None) is not None
        )
        error = _error(record.exc_info)
        text = " ".join(part for part in (line, extra, error and f"error={error}") if part)
        # One record, one line: a caller's words in a message (an unknown purpose, say)
        # cannot start a forged line (JSON escapes them by itself).
        return text.translate(_ONE_LINE)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "process": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                body[name] = value
        error = _error(record.exc_info)
        if error:
            body["error"] = error
        return json.dumps(body, separators=(",", ":"), default=str)


def log_config(fmt: str = "text", level: str = "INFO") -> dict[str, Any]:
    """One ``dictConfig`` for every process; gunicorn's own loggers (master and workers)
    go through the same handler, and its access log is replaced by ours (api/app.py)."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"pii": {"()": f"{__name__}.{formatter.__name__}"}},
        "filters": {"request": {"()": f"{__name__}.RequestContext"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "pii",
                "filters": ["request"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": False},
            "werkzeug": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            "alembic": {"level": "WARNING"},
            "casbin": {"level": "WARNING"},  # it logs its model and policy at INFO
        },
    }


def configure(fmt: str = "text", level: str = "INFO") -> None:
    logging.config.dictConfig(log_config(fmt, level))


def configure_from_env(env: Mapping[str, str], default_level: str) -> None:
    """The console script, before any command runs: a value it does not know falls back
    to the default here and is refused, in one line, when the command reads its settings."""
    fmt = (env.get("PII_VAULT_LOG_FORMAT") or "text").strip().lower()
    level = (env.get("PII_VAULT_LOG_LEVEL") or default_level).strip().upper()
    configure(
        fmt if fmt in LOG_FORMATS else "text", level if level in LOG_LEVELS else default_level
    )
