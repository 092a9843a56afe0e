"""Budgets on what people and services do, shared by every worker: reveals per person per
purpose per day, exact-match searches per person per minute (issue 18), and plaintext
fields read per principal per minute and per day, by role (issue 20: a principal reading
every subject successfully at full speed tripped nothing before).

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from access.errors import ReadBudgetSpent, RevealBudgetSpent, SearchBudgetSpent, Throttled
from access.models import UsageCounter
from vault.transactions import Transactions

log = logging.getLogger(__name__)

DAY = 86400
MINUTE = 60
DEFAULT_REVEALS_PER_DAY = 50
DEFAULT_SEARCHES_PER_MINUTE = 10
DEFAULT_READS = (6000, 200_000)  # plaintext fields per principal per minute, per day


# Built once (issue 21: building the statement cost more than running it).
_CHARGE = (
    update(UsageCounter)
    .where(
        UsageCounter.kind == bindparam("u_kind"),
        UsageCounter.key == bindparam("u_key"),
        UsageCounter.window_start == bindparam("u_start"),
        UsageCounter.spent + bindparam("u_n") <= bindparam("u_limit"),
    )
    .values(spent=UsageCounter.spent + bindparam("u_n"))
)
_ROW = (UsageCounter.kind == bindparam("u_kind"), UsageCounter.key == bindparam("u_key"))
_LOCKED = select(UsageCounter.window_start, UsageCounter.spent).where(*_ROW).with_for_update()
_RESET = (
    update(UsageCounter)
    .where(*_ROW)
    .values(window_start=bindparam("u_start"), spent=bindparam("u_n"))
)


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

    def take(self, key: str, n: int = 1, limit: int | None = None) -> None:
        """Charge ``n`` uses of ``key`` under the row's lock; raises (nothing charged) if
        they do not fit in the window's budget (``limit``: this key's, if not the default)."""
        take_together(self.tx, [(self, key, n, limit)])

    def charge(self, conn: Connection, key: str, n: int, limit: int | None = None) -> None:
        """``take`` inside the caller's transaction: a refusal raises, and the caller's
        rollback uncharges whatever else it charged."""
        limit = self.limit if limit is None else limit
        start = int(self.clock() // self.window) * self.window
        ids = {"u_kind": self.kind, "u_key": key}
        # The common case in one statement: the row is in this window and the uses fit
        # (its WHERE is re-checked under the row lock). Anything else (no row yet, a new
        # window, a refusal) takes the locked read below. Issue 21: the ORM's locked read
        # and flush were a sixth of a single read's cost.
        if conn.execute(_CHARGE, {**ids, "u_start": start, "u_n": n, "u_limit": limit}).rowcount:
            return
        row = conn.execute(_LOCKED, ids).one_or_none()
        spent = 0 if row is None or row.window_start != start else int(row.spent)
        if spent + n > limit:
            retry = max(1, math.ceil(start + self.window - self.clock()))
            raise self._refuse(key, retry)
        if row is None:
            conn.execute(
                insert(UsageCounter).values(kind=self.kind, key=key, window_start=start, spent=n)
            )
        else:
            conn.execute(_RESET, {**ids, "u_start": start, "u_n": spent + n})


def take_together(
    tx: Transactions, charges: Sequence[tuple[WindowCounter, str, int, int | None]]
) -> None:
    """Charge every ``(counter, key, n, limit)`` in one transaction: all or none."""
    for attempt in range(2):  # a concurrent first insert in another worker: retry once
        try:
            with tx.begin() as session:
                conn = session.connection()
                for counter, key, n, limit in charges:
                    counter.charge(conn, key, n, limit)
            return
        except IntegrityError:
            if attempt:
                raise


@dataclass(frozen=True)
class ReadLimits:
    """Plaintext fields a principal may read per minute and per day: ``default``, or the
    highest of its roles' own (``PII_VAULT_READ_BUDGET``, ``PII_VAULT_READ_BUDGET_ROLES``)."""

    default: tuple[int, int] = DEFAULT_READS
    roles: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def of(self, roles: tuple[str, ...]) -> tuple[int, int]:
        own = [self.roles[r] for r in roles if r in self.roles]
        if not own:
            return self.default
        return max(m for m, _ in own), max(d for _, d in own)


class UsageBudgets:
    """The budgets the guard charges: one per kind, ``refusals`` counted for /metrics."""

    def __init__(
        self,
        tx: Transactions,
        *,
        reveals_per_day: int = DEFAULT_REVEALS_PER_DAY,
        searches_per_minute: int = DEFAULT_SEARCHES_PER_MINUTE,
        reads: ReadLimits | None = None,
        clock: Callable[[], float] = time.time,
        alert: Callable[[str, dict[str, str]], None] | None = None,
    ) -> None:
        self.refusals: Counter[str] = Counter()
        self._tx = tx
        self.reads = reads if reads is not None else ReadLimits()
        self.alert = alert
        self.reveals_per_day = reveals_per_day
        self.searches_per_minute = searches_per_minute
        self._reveals = WindowCounter(
            tx, "reveal", reveals_per_day, DAY, self._reveal_refusal, clock=clock
        )
        self._searches = WindowCounter(
            tx, "search", searches_per_minute, MINUTE, self._search_refusal, clock=clock
        )
        self._reads_minute = WindowCounter(
            tx,
            "read_minute",
            self.reads.default[0],
            MINUTE,
            self._read_refusal("minute"),
            clock=clock,
        )
        self._reads_day = WindowCounter(
            tx, "read_day", self.reads.default[1], DAY, self._read_refusal("day"), clock=clock
        )

    def _alert(self, kind: str, detail: dict[str, str]) -> None:
        if self.alert is not None:
            self.alert(kind, detail)

    def _read_refusal(self, window: str) -> Callable[[str, int], Throttled]:
        def refuse(key: str, retry: int) -> Throttled:
            self.refusals["read"] += 1
            log.warning("ALERT read budget per %s spent by %s", window, key)
            self._alert("read_budget_spent", {"principal": key, "window": window})
            return ReadBudgetSpent(
                f"the plaintext read budget of this principal per {window} is spent; the "
                f"privacy office has been alerted; retry after {retry} s",
                retry,
            )

        return refuse

    def read_charge(
        self, principal: str, roles: tuple[str, ...], fields: int
    ) -> Callable[[Connection], Exception | None] | None:
        """``read`` as a charge for the audit event's own transaction (``AuditLog.append``):
        the budget and the event commit together; returns the refusal instead of raising."""
        if fields <= 0:
            return None
        per_minute, per_day = self.reads.of(roles)

        def charge(conn: Connection) -> Exception | None:
            try:
                self._reads_minute.charge(conn, principal, fields, per_minute)
                self._reads_day.charge(conn, principal, fields, per_day)
            except Throttled as exc:
                return exc
            return None

        return charge

    def read(self, principal: str, roles: tuple[str, ...], fields: int) -> None:
        """Charge ``fields`` plaintext reads (minute and day) before any is answered."""
        if fields <= 0:
            return
        per_minute, per_day = self.reads.of(roles)
        take_together(  # one transaction: a refusal by either window charges neither
            self._tx,
            [
                (self._reads_minute, principal, fields, per_minute),
                (self._reads_day, principal, fields, per_day),
            ],
        )

    def _reveal_refusal(self, key: str, retry: int) -> Throttled:
        self.refusals["reveal"] += 1
        log.warning("ALERT reveal budget spent (%s per day) by %s", self.reveals_per_day, key)
        self._alert("reveal_budget_spent", {"principal": key.split("|")[0]})
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
