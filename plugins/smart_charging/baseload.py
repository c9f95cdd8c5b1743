"""What the site draws besides its chargers, learned per quarter hour of the week, so the plan
knows the building's noon peak before it comes instead of assuming today's load all day.

Each completed quarter's average non-EV load updates that quarter-of-week's value by exponential
smoothing; the profile is kept across restarts. Until a quarter has been seen, the plan holds the
load measured now (what it did before it learned anything).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.storage.store import JsonStore

if TYPE_CHECKING:
    from hub.core import Hub

QUARTER = timedelta(minutes=15)
WEEK_QUARTERS = 7 * 96
ALPHA = 0.3  # weight of the newest week: a few weeks to settle, a changed building shows soon
MAX_GAP = timedelta(minutes=5)


def quarter_of_week(t: datetime, hub: Hub) -> int:
    local = t.astimezone(hub.time_zone)
    return local.weekday() * 96 + local.hour * 4 + local.minute // 15


class BaseLoadProfile:
    """Learns non-EV kW per quarter of the week from samples; forecasts a plan's slots."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.store = JsonStore(hub, "smart_charging.base_load")
        self.profile: dict[int, float] = {}
        self._quarter: datetime | None = None
        self._sum = 0.0  # kW x seconds in the current quarter
        self._seconds = 0.0
        self._last: tuple[datetime, float] | None = None

    def load(self) -> None:
        data = self.store.load()
        if not isinstance(data, dict):
            return
        try:
            profile = {int(k): float(v) for k, v in data["profile"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            self.store.set_aside(err)
            return
        self.profile = {k: v for k, v in profile.items() if 0 <= k < WEEK_QUARTERS}

    def _dump(self) -> dict[str, Any]:
        return {"profile": {str(k): round(v, 4) for k, v in sorted(self.profile.items())}}

    def sample(self, kw: float) -> None:
        """The non-EV load now (kW; negative when PV exports)."""
        now = self.hub.now()
        quarter = now - (now - now.replace(minute=0, second=0, microsecond=0)) % QUARTER
        if self._last is not None and timedelta(0) <= now - self._last[0] <= MAX_GAP:
            then, held = self._last
            cursor = then
            while self._quarter is not None and cursor < now:
                boundary = self._quarter + QUARTER
                until = min(now, boundary)
                self._sum += held * (until - cursor).total_seconds()
                self._seconds += (until - cursor).total_seconds()
                cursor = until
                if until == boundary:
                    self._close()
                    self._quarter, self._sum, self._seconds = boundary, 0.0, 0.0
        else:
            self._quarter, self._sum, self._seconds = quarter, 0.0, 0.0
        self._last = (now, kw)

    def _close(self) -> None:
        # A quarter mostly unmeasured (a restart, a meter gap) would teach a wrong value.
        if self._quarter is None or self._seconds < 0.8 * QUARTER.total_seconds():
            return
        average = self._sum / self._seconds
        key = quarter_of_week(self._quarter, self.hub)
        old = self.profile.get(key)
        self.profile[key] = average if old is None else old + ALPHA * (average - old)
        self.store.schedule_save(self._dump)

    def forecast(self, times: Sequence[datetime], now_kw: float) -> list[float]:
        """kW per slot starting at `times`: the load measured now for the current slot, the
        learned value of each later quarter, and the load now where nothing was learned yet."""
        out = []
        for i, t in enumerate(times):
            learned = None if i == 0 else self.profile.get(quarter_of_week(t, self.hub))
            out.append(now_kw if learned is None else learned)
        return out
