"""Holiday calendars for time-of-use rules: explicit dates plus a few named national calendars.

Kept deliberately small: fixed dates, Easter-based dates and nth-weekday rules, no regional days.

    >>> sorted(d.isoformat() for d in calendar_dates("de", 2026))[:4]
    ['2026-01-01', '2026-04-03', '2026-04-06', '2026-05-01']
    >>> date(2026, 11, 26) in Holidays(("us_utility",))  # Thanksgiving
    True
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

__all__ = ["CALENDARS", "Holidays", "calendar_dates", "easter"]


def easter(year: int) -> date:
    """Easter Sunday of the Gregorian calendar (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th `weekday` (0 = Monday) of a month; n = -1 is the last one."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _fixed_and_easter(year: int, fixed: Iterable[tuple[int, int]], offsets: Iterable[int]) -> set:
    sunday = easter(year)
    return {date(year, m, d) for m, d in fixed} | {sunday + timedelta(days=o) for o in offsets}


def _de(year: int) -> set[date]:
    # Nationwide public holidays only: Good Friday, Easter Monday, Ascension, Whit Monday.
    return _fixed_and_easter(year, [(1, 1), (5, 1), (10, 3), (12, 25), (12, 26)], [-2, 1, 39, 50])


def _at(year: int) -> set[date]:
    fixed = [(1, 1), (1, 6), (5, 1), (8, 15), (10, 26), (11, 1), (12, 8), (12, 25), (12, 26)]
    return _fixed_and_easter(year, fixed, [1, 39, 50, 60])  # Corpus Christi is Easter + 60


def _us_utility(year: int) -> set[date]:
    # The holiday list of Californian utilities' TOU tariffs (SCE, PG&E): a holiday on a Sunday
    # moves to the Monday, one on a Saturday does not move.
    days = {
        date(year, 1, 1),
        _nth_weekday(year, 2, 0, 3),  # Presidents' Day
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        date(year, 7, 4),
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        date(year, 11, 11),
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        date(year, 12, 25),
    }
    return {d + timedelta(days=1) if d.weekday() == 6 else d for d in days}


CALENDARS = {"de": _de, "at": _at, "us_utility": _us_utility}


@functools.lru_cache(maxsize=256)
def calendar_dates(name: str, year: int) -> frozenset[date]:
    """The holidays of the named calendar in `year`; KeyError for an unknown name."""
    return frozenset(CALENDARS[name](year))


@dataclass(frozen=True, slots=True)
class Holidays:
    """Named calendars, explicit dates and every-year MM-DD dates; `day in holidays`."""

    calendars: tuple[str, ...] = ()
    dates: frozenset[date] = field(default_factory=frozenset)
    every_year: frozenset[tuple[int, int]] = field(default_factory=frozenset)

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        if day in self.dates or (day.month, day.day) in self.every_year:
            return True
        return any(day in calendar_dates(name, day.year) for name in self.calendars)

    def __bool__(self) -> bool:
        return bool(self.calendars or self.dates or self.every_year)
