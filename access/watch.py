"""Alerts from conditions, not events (issue 20, §4 incident response): audit anchoring
failing or falling behind, subjects whose key is lost (damaged), and bulk exports — the
alert hook (``access/alerts.py``) hears of each when it starts or grows, and again at most
every ``PII_VAULT_ALERT_REPEAT_SECONDS`` (3600) while it lasts, never of a value.

State is per process: with several workers each may alert once for the same condition
(the receiver sees the worker's principal-free detail twice at most per interval).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from access.alerts import AlertSink
from access.audit import AuditLog

DEFAULT_REPEAT_SECONDS = 3600.0
DEFAULT_BULK_EXPORTS = 20  # exports (or disclosures) by one principal in an hour
DEFAULT_ANCHOR_BACKLOG = 5000  # events not anchored outside the database


class Watch:
    def __init__(
        self,
        alerts: AlertSink,
        audit: AuditLog,
        *,
        repeat: float = DEFAULT_REPEAT_SECONDS,
        bulk_exports: int = DEFAULT_BULK_EXPORTS,
        anchor_backlog: int = DEFAULT_ANCHOR_BACKLOG,
    ) -> None:
        self.alerts = alerts
        self.audit = audit
        self.repeat = repeat
        self.bulk_exports = bulk_exports
        self.anchor_backlog = anchor_backlog
        self._last: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._anchor_failures = 0

    def observe(
        self,
        kind: str,
        count: int,
        detail: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
    ) -> bool:
        """Alert ``kind`` if ``count`` > 0 and it is new, has grown, or was last told more
        than ``repeat`` seconds ago; a count of 0 ends the condition. ``key``: one
        condition of several of a kind (e.g. per principal). True: alerted."""
        now = time.monotonic()
        key = key or kind
        with self._lock:
            if count <= 0:
                self._last.pop(key, None)
                return False
            previous = self._last.get(key)
            if previous is not None and count <= previous[0] and now - previous[1] < self.repeat:
                return False
            self._last[key] = (count, now)
        self.alerts.send(kind, {"count": count, **(detail or {})})
        return True

    # -- the tick ----------------------------------------------------------------------

    def tick(self, damaged: Callable[[], int], anchor_failures: int) -> None:
        """Maintenance: damaged subjects, and the audit anchor failing or behind."""
        self.observe("subjects_damaged", damaged())
        anchorer = self.audit.anchorer
        if anchorer is None:
            return
        failing = anchor_failures > self._anchor_failures
        self._anchor_failures = anchor_failures
        try:
            unanchored = max(0, anchorer.head_seq() - (anchorer.tip or 0))
        except Exception:
            return
        behind = failing or unanchored >= self.anchor_backlog
        detail = {"unanchored": unanchored, "failing": failing}
        self.observe("anchor_backlog", unanchored if behind and unanchored else 0, detail)

    # -- a request ---------------------------------------------------------------------

    def exported(self, principal: str, action: str) -> None:
        """After an export or disclosure: the principal's ``bulk_exports``-th in an hour
        alerts (once as the threshold is crossed, again as it grows past the repeat)."""
        if self.bulk_exports <= 0:
            return
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat(timespec="microseconds")
        done = self.audit.events(
            principal=principal,
            action=action,
            decision="allow",
            since=since,
            limit=self.bulk_exports,
        )
        if len(done) >= self.bulk_exports:
            detail = {"principal": principal, "action": action, "window_seconds": 3600}
            self.observe("bulk_export", len(done), detail, key=f"bulk_export:{principal}")
