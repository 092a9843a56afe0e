"""Periodic work each serving process does in the background, so bounds hold without traffic.

Each task runs every ``interval`` seconds on one daemon thread; a task that
fails is logged (its type only, never its message, which could name data) and
tried again at the next tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vault.errors import cause

log = logging.getLogger(__name__)
Task = Callable[[], None]


class Maintenance:
    def __init__(self, interval: float, tasks: list[tuple[str, Task]]) -> None:
        if interval <= 0:
            raise ValueError("maintenance interval must be positive")
        self.interval = interval
        self.tasks = tasks
        self.failures: dict[str, int] = {name: 0 for name, _ in tasks}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, task: Task) -> None:
        """A task of a part composed later (the console's session sweep)."""
        self.failures.setdefault(name, 0)
        self.tasks.append((name, task))

    def start(self) -> Maintenance:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pii-vault-maintenance")
            self._thread.daemon = True
            self._thread.start()
        return self

    def wake(self) -> None:
        """Run the tasks now rather than at the next tick (e.g. an anchor is due by count)."""
        self._wake.set()

    def run_once(self) -> None:
        for name, task in self.tasks:
            try:
                task()
            except Exception as exc:
                self.failures[name] += 1
                log.warning("maintenance task %s failed: %s", name, cause(exc))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self.interval)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
