"""Budgets on what people do, shared by every worker (issue 18): reveals per person per
purpose per day, exact-match searches per person per minute.

A justification is a format check; a ticket system (``access/tickets.py``) can say
more, but even a valid ticket must not open every customer: one invented ticket used to
reveal 20 customers in a row, and the console's phone search found all 20 customers of
a 300-guess sweep in 3.4 s. Each use is charged, in one locked step, before anything is
answered; a spent budget refuses (429 with ``Retry-After``), is audited by the guard,
logged as an alert and counted in ``/metrics`` (``pii_vault_budget_refusals``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from access.errors import RevealBudgetSpent, SearchBudgetSpent, Throttled
from access.models import UsageCounter
from vault.transactions import Transactions

log = logging.getLogger(__name__)

DAY = 86400
MINUTE = 60
DEFAULT_REVEALS_PER_DAY = 50
DEFAULT_SEARCHES_PER_MINUTE = 10


class WindowCounter:
    """Uses per key in fixed windows (UTC-aligned): ``take`` charges one use, or refuses."""

    def __init__(
        self,
        tx: Transactions,
        kind: str,
        limit: int,
        window: int,
        refuse: Callable[[str, int], Throttled],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1 or window < 1:
            raise ValueError(f"the {kind} budget needs a limit and a window of at least 1")
        self.tx, self.kind, self.limit, self.window = tx, kind, limit, window
        self._refuse, self.clock = refuse, clock

    def take(self, key: str) -> None:
        """Charge one use of ``key`` under the row's lock; raises (nothing charged) if the
        window's budget is already spent."""
        start = int(self.clock() // self.window) * self.window
        for attempt in range(2):  # a concurrent first insert in another worker: retry once
            try:
                with self.tx.begin() as session:
                    row = session.execute(
                        select(UsageCounter)
                        .where(UsageCounter.kind == self.kind, UsageCounter.key == key)
                        .with_for_update()
                    ).scalar_one_or_none()
                    if row is None:
                        session.add(
                            UsageCounter(kind=self.kind, key=key, window_start=start, spent=1)
                        )
                    elif row.window_start != start:
                        row.window_start, row.spent = start, 1
                    elif row.spent >= self.limit:
                        retry = max(1, math.ceil(start + self.window - self.clock()))
                        raise self._refuse(key, retry)
                    else:
                        row.spent = UsageCounter.spent + 1
                return
            except IntegrityError:
                if attempt:
                    raise


class UsageBudgets:
    """The budgets the guard charges: one per kind, ``refusals`` counted for /metrics."""

    def __init__(
        self,
        tx: Transactions,
        *,
        reveals_per_day: int = DEFAULT_REVEALS_PER_DAY,
        searches_per_minute: int = DEFAULT_SEARCHES_PER_MINUTE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.refusals: Counter[str] = Counter()
        self.reveals_per_day = reveals_per_day
        self.searches_per_minute = searches_per_minute
        self._reveals = WindowCounter(
            tx, "reveal", reveals_per_day, DAY, self._reveal_refusal, clock=clock
        )
        self._searches = WindowCounter(
            tx, "search", searches_per_minute, MINUTE, self._search_refusal, clock=clock
        )

    def _reveal_refusal(self, key: str, retry: int) -> Throttled:
        self.refusals["reveal"] += 1
        log.warning("ALERT reveal budget spent (%s per day) by %s", self.reveals_per_day, key)
        return RevealBudgetSpent(
            f"you have revealed {self.reveals_per_day} subjects for this purpose today, the "
            "most allowed; the privacy office has been alerted. Ask them if you need more",
            retry,
        )

    def _search_refusal(self, key: str, retry: int) -> Throttled:
        self.refusals["search"] += 1
        log.warning("search budget spent (%s per minute) by %s", self.searches_per_minute, key)
        return SearchBudgetSpent(
            f"at most {self.searches_per_minute} searches a minute; retry after {retry} s",
            retry,
        )

    def reveal(self, principal: str, purpose: str) -> None:
        self._reveals.take(f"{principal}|{purpose}")

    def search(self, principal: str) -> None:
        self._searches.take(principal)
