"""Who is a minor (privacy policy §6), from the date of birth when it is known (issue 19).

A stated ``is_minor`` used to be whatever the caller said: a date of birth in 2016
was stored with ``is_minor = false``. Now the date decides when it is given; a
stated flag that contradicts it is refused (``minor_flag_conflicts``), never
silently corrected, so the caller learns their record is inconsistent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

DATE_OF_BIRTH = "date_of_birth"


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def age_on(born: dt.date, day: dt.date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


@dataclass(frozen=True)
class Majority:
    """The age of majority and the child age (policy §6: guardians consent below them)."""

    age_of_majority: int = 18
    child_age: int = 14
    today: Callable[[], dt.date] = field(default=_today, compare=False)

    def minor(self, date_of_birth: bytes | str) -> bool:
        text = date_of_birth.decode() if isinstance(date_of_birth, bytes) else date_of_birth
        return age_on(dt.date.fromisoformat(text), self.today()) < self.age_of_majority
