"""Call counting as a wrapper, so no key interface carries a counter.

Metrics and benchmarks want "how often did we ask Vault"; wrapping the backend
once where the runtime is composed answers that for every primitive at once.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, TypeVar, cast

T = TypeVar("T")


class CallCounter:
    """Counts calls made through the objects it wrapped. Thread-safe."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def add(self) -> None:
        with self._lock:
            self._count += 1

    def wrap(self, target: T) -> T:
        """``target`` with every public method call counted; attributes pass through."""
        return cast(T, _Counted(target, self))


class _Counted:
    # Lifecycle calls and local choices are not requests to the key provider.
    _UNCOUNTED = frozenset({"close", "new_subject_id"})

    def __init__(self, target: object, counter: CallCounter) -> None:
        self._target = target
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name.startswith("_") or name in self._UNCOUNTED or not callable(attr):
            return attr

        @functools.wraps(attr)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self._counter.add()
            return attr(*args, **kwargs)

        return counted

    def __repr__(self) -> str:
        return f"counted({self._target!r})"
