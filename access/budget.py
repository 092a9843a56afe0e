"""A per-principal budget of failed token lookups, shared by every worker (in the database).

Tokens are unguessable except format-preserving card tokens (8-15 random
digits: 26-50 bits), so a caller who may detokenize could enumerate them by
trying. Every token that does not resolve (unknown, malformed, shredded) is
charged to the caller; past ``limit`` failures in a fixed ``window`` of
seconds, detokenize answers 429 with ``Retry-After`` until the window ends.

Checked and charged in one locked step (issue 17): a request's misses are charged
before any of its answers leave, and the request is refused (nothing answered) if
the budget was already spent when it charged. Concurrent requests therefore learn
at most ``limit - 1`` plus one request's worth of misses per window, however many
run at once; a request with no misses is refused only once the budget is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access.errors import TooManyFailedLookups
from access.models import LookupFailures
from vault.transactions import Transactions

DEFAULT_LIMIT = 1000
DEFAULT_WINDOW = 60


class LookupBudget:
    def __init__(
        self,
        tx: Transactions,
        *,
        limit: int = DEFAULT_LIMIT,
        window: int = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1 or window < 1:
            raise ValueError("lookup budget needs limit >= 1 and window >= 1 s")
        self.tx, self.limit, self.window, self.clock = tx, limit, window, clock
        self.trips = 0  # requests refused (a Prometheus counter reads it)

    def _window(self) -> int:
        return int(self.clock() // self.window) * self.window

    def check(self, principal: str, session: Session | None = None) -> None:
        """Raise TooManyFailedLookups if ``principal`` has spent its budget in this window."""
        start = self._window()
        with self.tx.reading(session) as read:
            row = read.get(LookupFailures, principal)
            spent = row.failures if row is not None and row.window_start == start else 0
        if spent >= self.limit:
            raise self._refuse(start)

    def _refuse(self, start: int) -> TooManyFailedLookups:
        self.trips += 1
        retry_after = max(1, math.ceil(start + self.window - self.clock()))
        return TooManyFailedLookups(
            f"too many tokens did not resolve; retry after {retry_after} s", retry_after
        )

    def charge(self, principal: str, failures: int) -> None:
        """Charge ``failures`` under the row's lock; TooManyFailedLookups (the request must
        answer nothing) if the budget was spent before this charge."""
        if failures <= 0:
            return
        start = self._window()
        spent_before = 0
        for _ in range(2):  # a concurrent first insert in another worker: retry once
            try:
                with self.tx.begin() as session:
                    row = session.execute(
                        select(LookupFailures)
                        .where(LookupFailures.principal == principal)
                        .with_for_update()
                    ).scalar_one_or_none()
                    if row is None:
                        session.add(
                            LookupFailures(
                                principal=principal, window_start=start, failures=failures
                            )
                        )
                    elif row.window_start != start:
                        row.window_start, row.failures = start, failures
                    else:
                        spent_before = int(row.failures)
                        row.failures = LookupFailures.failures + failures
                break
            except IntegrityError:
                continue
        if spent_before >= self.limit:
            raise self._refuse(start)
