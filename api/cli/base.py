"""What every ``pii-vault`` command shares: one-line errors with exit codes, the
command's runtime, operator audit events, and the shred bookkeeping two groups use.
Every command group's module (``api/cli/*.py``) imports these."""

from __future__ import annotations

import contextlib
import getpass
import signal
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, TypeVar

import click

from access.decisions import Verdict
from access.errors import (
    AccessConfigError,
    AccessError,
    AuditUnavailable,
    IdentityProviderUnavailable,
)
from access.events import operator
from access.runtime import Runtime, open_runtime
from keys.errors import KeyProviderConfigError, KeyProviderError, KeyUnavailable
from vault.config import Settings
from vault.errors import ConfigError, ServiceUnavailable, VaultError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def _one_line_errors(fn: F) -> F:
    """Turn project errors into ``pii-vault: error: ...`` and an exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, KeyProviderConfigError, AccessConfigError) as exc:
            click.echo(f"pii-vault: configuration error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        except (
            ServiceUnavailable,
            KeyUnavailable,
            AuditUnavailable,
            IdentityProviderUnavailable,
        ) as exc:
            click.echo(f"pii-vault: unavailable: {exc}", err=True)
            sys.exit(EXIT_UNAVAILABLE)
        except (VaultError, KeyProviderError, AccessError) as exc:
            click.echo(f"pii-vault: error: {exc}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def stop_on_signals() -> None:
    """SIGTERM (and SIGINT) unwind the command like Ctrl-C: its ``finally`` blocks stop the
    children it started (OpenBao servers, a served API). Python's default for SIGTERM is
    to die at once, which left ``demo --keep``'s OpenBao servers running (issue 22)."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, interrupt)


@contextlib.contextmanager
def _runtime(settings: Settings | None = None, *, migrate: bool = False) -> Iterator[Runtime]:
    """The runtime for one command, closed however the command ends."""
    runtime = open_runtime(settings or Settings.from_env(), migrate=migrate)
    try:
        yield runtime
    finally:
        runtime.close()


def _operator_name() -> str:
    return f"operator:{getpass.getuser()}"


def _operator_event(
    runtime: Runtime,
    action: str,
    subject_ids: list[str],
    verdict: Verdict,
    detail: dict[str, str] | None = None,
) -> None:
    """Operators act outside the HTTP policy, but never outside the audit log."""
    runtime.audit.append(operator(_operator_name(), action, subject_ids, verdict, detail))


def _shreds_completed(runtime: Runtime, subject_ids: list[str]) -> None:
    """Record the "completed" event of finished shreds, then that it is recorded (so
    `shred --pending` and `reconcile` stop listing them)."""
    done = sorted(set(subject_ids))
    if done:
        _operator_event(runtime, "shred", done, "completed")
        runtime.shredder.completion_audited(done)


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``90d``, ``12h``, ``30m``, ``0s``: seconds (one spelling for every command)."""
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit():
        raise click.BadParameter("a duration such as 90d, 12h, 30m or 0s")
    return int(text[:-1]) * _UNITS[text[-1]]
