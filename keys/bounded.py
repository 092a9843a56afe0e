"""Bounded waits on Vault: a circuit breaker and the lanes of server threads.

The breaker fails calls fast after repeated failures (so a hung Vault costs one
timeout, not one per request); the lanes keep at least one server thread free of
Vault calls, so ``/healthz`` and requests that need no Vault call (warm reads)
are never queued behind a hung Vault (issue 24).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from keys.errors import KeyUnavailable

log = logging.getLogger(__name__)

BREAKER_FAILURES = 3  # calls in a row that failed everywhere or timed out
BREAKER_SECONDS = 2.0  # open this long, then one trial call
LANE_WAIT = 0.01  # a request waits this long for a free lane before it fails fast


class CircuitOpen(KeyUnavailable):
    """Vault failed repeatedly just now: fail fast instead of waiting on it again."""


# -- the circuit breaker -----------------------------------------------------------------


class Breaker:
    """closed -> (BREAKER_FAILURES failures) -> open -> (BREAKER_SECONDS) -> half-open: one
    trial call; its success closes, its failure opens again."""

    def __init__(self, failures: int = BREAKER_FAILURES, seconds: float = BREAKER_SECONDS):
        self.failures_to_open = failures
        self.seconds = seconds
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self.opened = 0  # times opened (a metric)
        self.rejected = 0  # calls failed fast (a metric)

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._due() else "open"

    def _due(self) -> bool:
        return self._opened_at is not None and time.monotonic() - self._opened_at >= self.seconds

    def before(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            if self._due() and not self._trial:
                self._trial = True  # this call is the trial
                return
            self.rejected += 1
        raise CircuitOpen("key provider unavailable: Vault failed repeatedly just now")

    def success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or (self._opened_at is None and self._failures >= self.failures_to_open):
                if self._opened_at is None or self._trial:
                    self.opened += 1
                    log.warning(
                        "vault: circuit opened after %d failed calls; failing fast for %.0f s",
                        self._failures,
                        self.seconds,
                    )
                self._opened_at, self._trial = time.monotonic(), False


# -- lanes: server threads that may wait on Vault ----------------------------------------


@dataclass
class _Holder:
    held: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_request: contextvars.ContextVar[_Holder | None] = contextvars.ContextVar(
    "pii_vault_vault_lane", default=None
)


class Lanes:
    """At most ``size`` requests of this process wait on Vault at once.

    A request takes a lane at its first Vault call (through the context, so the
    thread pools working for it share its lane) and keeps it until it ends. With
    ``size`` one less than the server's threads, one thread is always free for
    ``/healthz`` and for requests that need no Vault call. A request that finds
    every lane taken waits ``LANE_WAIT`` and then fails fast (503): under normal
    load lanes free within milliseconds; during a Vault hang they do not.
    Outside a request (CLI, maintenance) there is no limit.
    """

    def __init__(self) -> None:
        self._sem: threading.BoundedSemaphore | None = None
        self.size = 0
        self.rejected = 0

    def configure(self, size: int) -> None:
        self.size = max(0, size)
        self._sem = threading.BoundedSemaphore(self.size) if self.size else None

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Around one request: its lane, if it takes one, is released at its end."""
        holder = _Holder()
        token = _request.set(holder)
        try:
            yield
        finally:
            _request.reset(token)
            self._release(holder)

    def begin_request(self) -> contextvars.Token[_Holder | None]:
        return _request.set(_Holder())

    def end_request(self, token: contextvars.Token[_Holder | None]) -> None:
        holder = _request.get()
        with contextlib.suppress(ValueError, RuntimeError):  # set in another context
            _request.reset(token)
        if holder is not None:
            self._release(holder)

    def _release(self, holder: _Holder) -> None:
        with holder.lock:
            if holder.held and self._sem is not None:
                self._sem.release()
            holder.held = False

    def take(self) -> None:
        holder, sem = _request.get(), self._sem
        if holder is None or sem is None:
            return
        with holder.lock:
            if holder.held:
                return
            if not sem.acquire(timeout=LANE_WAIT):
                self.rejected += 1
                raise KeyUnavailable(
                    "key provider unavailable: every request thread is waiting on Vault"
                )
            holder.held = True


LANES = Lanes()  # one per process: the server threads are the process's

P = ParamSpec("P")
R = TypeVar("R")


def in_context(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` to run on a pool thread as part of the calling request (sharing its lane)."""
    context = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run
