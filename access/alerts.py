"""The alert hook (issue 20, incident response): events an on-call person must hear of
at once — a break-glass opened or closed, and later approvals pending, budget trips,
audit failures — posted as JSON to ``PII_VAULT_ALERT_URL``, signed with the vault's
Ed25519 audit key (``X-PII-Vault-Signature``, base64 over the exact body; verify with
``pii-vault audit public-key``'s key). Never a value: principals, subject ids, fields,
purposes, times and counts only.

Delivery never holds up the request that raised the alert: a bounded queue and one
sender thread, three tries with backoff; what could not be delivered is logged and
counted (``undelivered``), never silently dropped.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import requests

from vault.models import iso

log = logging.getLogger(__name__)
MAX_QUEUED = 1000


class AlertSink(Protocol):
    undelivered: int

    def send(self, kind: str, detail: Mapping[str, Any]) -> None: ...

    def flush(self, timeout: float = 5.0) -> bool: ...

    def close(self) -> None: ...


class NoAlerts:
    """No hook configured: alerts are logged only."""

    undelivered = 0

    def send(self, kind: str, detail: Mapping[str, Any]) -> None:
        log.warning("alert %s (no PII_VAULT_ALERT_URL configured)", kind)

    def flush(self, timeout: float = 5.0) -> bool:
        return True

    def close(self) -> None:
        return None


class HttpAlerts:
    def __init__(
        self,
        url: str,
        sign: Callable[[bytes], bytes],
        *,
        timeout: float = 5.0,
        tries: int = 3,
    ) -> None:
        self.url = url
        self.sign = sign
        self.timeout = timeout
        self.tries = tries
        self.undelivered = 0
        self.delivered = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(MAX_QUEUED)
        self._http = requests.Session()
        self._thread = threading.Thread(target=self._run, name="pii-vault-alerts", daemon=True)
        self._thread.start()

    def send(self, kind: str, detail: Mapping[str, Any]) -> None:
        body = json.dumps(
            {"kind": kind, "at": iso(dt.datetime.now(dt.UTC)), "detail": dict(detail)},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self.undelivered += 1
            log.error("alert %s not queued: %d alerts waiting already", kind, MAX_QUEUED)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued alert was delivered or given up (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return self._queue.unfinished_tasks == 0

    def close(self) -> None:
        self.flush(self.timeout)
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                if body is None:
                    return
                self._deliver(body)
            finally:
                self._queue.task_done()

    def _deliver(self, body: bytes) -> None:
        try:
            signature = base64.b64encode(self.sign(body)).decode()
        except Exception as exc:
            self.undelivered += 1
            log.error("alert not signed (%s): not sent", type(exc).__name__)
            return
        headers = {"Content-Type": "application/json", "X-PII-Vault-Signature": signature}
        for attempt in range(self.tries):
            try:
                r = self._http.post(self.url, data=body, headers=headers, timeout=self.timeout)
                if r.status_code < 300:
                    self.delivered += 1
                    return
                reason = f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                reason = type(exc).__name__
            time.sleep(0.2 * 2**attempt)
        self.undelivered += 1
        log.error("alert not delivered after %d tries (%s)", self.tries, reason)
