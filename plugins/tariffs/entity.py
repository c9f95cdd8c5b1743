"""The `tariff.<name>` entity: the price in force now as its state, what comes next as attributes,
re-written at every slot boundary (and local midnight) by a timer on the hub clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.clock import Timer
from hub.entities import Entity
from plugins.tariffs import prices

if TYPE_CHECKING:
    from plugins.tariffs.fetch import Tariff

MAX_SLOTS = 200  # two days of 15-minute slots fit; the state stays a few kB


class TariffEntity(Entity):
    """What automations and the UI see of one tariff."""

    domain = "tariff"

    def __init__(self, tariff: Tariff) -> None:
        super().__init__(f"tariffs-{tariff.name}", tariff.name)
        self.tariff = tariff
        self._timer: Timer | None = None

    @property
    def unit(self) -> str | None:
        return self.tariff.unit

    def native_state(self) -> Any:
        assert self.hub is not None
        price = prices.price_at(self.tariff.series, self.hub.now())
        return None if price is None else round(price, 6)

    def state_attributes(self) -> Mapping[str, Any]:
        assert self.hub is not None
        tariff, now = self.tariff, self.hub.now()
        midnight = _local_midnight(self.hub.now_local())
        today = prices.stats(tariff.series, midnight, _next_midnight(midnight))
        change = prices.next_change(tariff.series, now)
        success = tariff.last_success
        return {
            "currency": tariff.currency,
            "unit": tariff.unit,
            "kind": tariff.kind,
            "signal": tariff.signal,
            "source": tariff.description,
            "slots": prices.slot_dicts(prices.upcoming(tariff.series, now, MAX_SLOTS)),
            "next_change": None if change is None else change.isoformat(),
            "today_min": today["min"],
            "today_max": today["max"],
            "today_mean": today["mean"],
            "demand_charges": tariff.demand_charge_attributes(),
            "stale": tariff.stale,
            "last_error": tariff.last_error,
            "last_updated_from_source": None if success is None else success.isoformat(),
        }

    async def added_to_hub(self) -> None:
        self._arm()

    async def removed_from_hub(self) -> None:
        self.cancel()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def refresh(self) -> None:
        """New prices or a new status: write the state and re-arm the boundary timer."""
        self.write_state()
        self._arm()

    def _arm(self) -> None:
        """A timer at the next slot boundary or local midnight, whichever comes first."""
        if self.hub is None:
            return
        self.cancel()
        now = self.hub.now()
        when = _next_midnight(_local_midnight(self.hub.now_local()))
        series = self.tariff.series
        if series is not None:
            for slot in series.slots_between(now, when, clip=False):
                edge = slot.start if slot.start > now else slot.end
                if edge > now:
                    when = min(when, edge)
                    break
        self._timer = self.hub.clock.call_at(when, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.refresh()


def _local_midnight(local: datetime) -> datetime:
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_midnight(midnight: datetime) -> datetime:
    """The next local midnight; adding to an aware time is wall-clock arithmetic in Python, so
    this holds on 23- and 25-hour days too."""
    return midnight + timedelta(days=1)
