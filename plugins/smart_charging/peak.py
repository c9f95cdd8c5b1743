"""The billing period's demand peak as the utility meters it: the highest 15-minute average of the
site's import, measured on the hub clock, kept across restarts, and handed to the planner.

The planner treats the period's peak so far as paid for: charging up to it costs no demand charge.
`sensor.site_peak_demand` shows it (and the last period's) to the UI and to automations.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from hub.storage.store import JsonStore
from plugins.smart_charging.strategy import RECENT_PERIODS

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

QUARTER = timedelta(minutes=15)
ENTITY_ID = "sensor.site_peak_demand"
MAX_GAP = timedelta(minutes=5)  # samples further apart than this say nothing about between


def period_start(t: datetime, period: str, tz: tzinfo) -> datetime:
    """Where the billing period holding `t` begins, in the site's time zone (midnight)."""
    local = t.astimezone(tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        day = day.replace(day=1)
    # Midnight in local time: rebuilt from the date so a DST change is honoured.
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def quarter_start(t: datetime) -> datetime:
    return t.replace(minute=t.minute - t.minute % 15, second=0, microsecond=0)


class PeakTracker:
    """Integrates site import kW between samples into clock quarters; keeps the period's max."""

    def __init__(self, hub: Hub, period: str = "month") -> None:
        self.hub = hub
        self.period = period
        self.store = JsonStore(hub, "smart_charging.peak")
        self.period_start: datetime | None = None
        self.peak_kw = 0.0
        self.peak_at: datetime | None = None
        self.recent_peaks_kw: list[float] = []  # the last periods' peaks, oldest first
        self._quarter: datetime | None = None
        self._kwh = 0.0  # energy imported in the current quarter so far
        self._last: tuple[datetime, float] | None = None

    def load(self) -> None:
        data = self.store.load()
        if not isinstance(data, dict):
            return
        try:
            start = datetime.fromisoformat(data["period_start"])
            peak, at = float(data["peak_kw"]), data.get("peak_at")
            last = data.get("last_period_peak_kw")
            # Files from before the hub kept several periods have the last one only.
            recent = data.get("recent_peaks_kw", [] if last is None else [last])
            recent = [float(kw) for kw in recent][-RECENT_PERIODS:]
        except (KeyError, TypeError, ValueError) as err:
            self.store.set_aside(err)
            return
        self.period_start, self.peak_kw = start, peak
        self.peak_at = datetime.fromisoformat(at) if at else None
        self.recent_peaks_kw = recent
        self._roll(self.hub.now())

    def _dump(self) -> dict[str, Any]:
        return {
            "period_start": self.period_start.isoformat() if self.period_start else None,
            "peak_kw": self.peak_kw,
            "peak_at": self.peak_at.isoformat() if self.peak_at else None,
            "last_period_peak_kw": self.last_period_peak_kw,
            "recent_peaks_kw": self.recent_peaks_kw,
        }

    @property
    def last_period_peak_kw(self) -> float | None:
        return self.recent_peaks_kw[-1] if self.recent_peaks_kw else None

    def _roll(self, now: datetime) -> None:
        """A new billing period starts with no peak; the old one's is remembered as a hint."""
        start = period_start(now, self.period, self.hub.time_zone)
        if self.period_start is None:
            self.period_start = start
        elif start != self.period_start:
            _LOGGER.info("billing period %s ended with a peak of %.1f kW", self.period_start,
                         self.peak_kw)  # fmt: skip
            self.recent_peaks_kw = [*self.recent_peaks_kw, self.peak_kw][-RECENT_PERIODS:]
            self.period_start, self.peak_kw, self.peak_at = start, 0.0, None
            self.store.schedule_save(self._dump)

    def sample(self, kw: float) -> None:
        """The site's import now (kW; export counts as 0, a demand charge bills import)."""
        now = self.hub.now()
        kw = max(0.0, kw)
        if self._last is None or not timedelta(0) <= now - self._last[0] <= MAX_GAP:
            # First sample, or a hole in the record: nothing is known of the time between, so
            # the quarter is judged on what was measured in it.
            self._quarter, self._kwh = quarter_start(now), 0.0
        else:
            then, held = self._last
            cursor = then
            while self._quarter is not None and cursor < now:
                boundary = self._quarter + QUARTER
                until = min(now, boundary)
                self._kwh += held * (until - cursor) / timedelta(hours=1)
                cursor = until
                if until == boundary:
                    self._close()
                    self._quarter, self._kwh = boundary, 0.0
        self._last = (now, kw)
        self._roll(now)
        self._publish(kw)

    def _close(self) -> None:
        assert self._quarter is not None
        average = self._kwh / (QUARTER / timedelta(hours=1))
        self._roll(self._quarter)
        if average > self.peak_kw + 1e-9:
            self.peak_kw, self.peak_at = average, self._quarter
            self.store.schedule_save(self._dump)

    def _publish(self, kw: float) -> None:
        quarter_h = QUARTER / timedelta(hours=1)
        self.hub.states.set(
            ENTITY_ID,
            round(self.peak_kw, 3),
            {
                "friendly_name": "Site peak demand (billing period)",
                "period": self.period,
                "period_start": self.period_start.isoformat() if self.period_start else None,
                "peak_at": self.peak_at.isoformat() if self.peak_at else None,
                "last_period_peak_kw": self.last_period_peak_kw,
                "recent_peaks_kw": self.recent_peaks_kw,
                "import_kw": round(kw, 3),
                "quarter_so_far_kw": round(self._kwh / quarter_h, 3),
            },
            unit="kW",
        )
