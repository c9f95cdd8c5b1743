"""The engine's planner: builds the optimizer's problem from the hub's state and signals, solves
it in a thread (never on the loop), and keeps the latest plan for the allocator to follow.

One solve at a time; requests arriving meanwhile collapse into one more solve with the newest state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.charging.signals import SignalStore, TimeSeries
from hub.charging.site import Site
from plugins.smart_charging.baseload import BaseLoadProfile
from plugins.smart_charging.optimizer import Plan, PlanProblem, VehicleNeed
from plugins.smart_charging.peak import PeakTracker
from plugins.smart_charging.strategy import peak_hint, plan_smart

if TYPE_CHECKING:
    from hub.core import Hub
    from plugins.smart_charging.allocator import Cap

_LOGGER = logging.getLogger(__name__)

SLOT = timedelta(minutes=15)
CEILING_MARGIN = 0.03  # the share of a car's most kW the live plan leaves for catching up
EVENT_PLANNED = "smart_charging_planned"


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What the engine knows when it asks for a plan."""

    vehicles: tuple[VehicleNeed, ...]
    node_caps: Mapping[str, Cap]
    base_kw: float  # the site's non-EV load now; later slots from the learned profile
    now: datetime


def slot_start(t: datetime) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return t - (t - epoch) % SLOT


class Planner:
    def __init__(self, hub: Hub, site: Site, conf: Mapping[str, Any]) -> None:
        self.hub = hub
        self.site = site
        self.conf = conf
        self.plan: Plan | None = None
        self.version = 0
        self._task: asyncio.Task[None] | None = None
        self._next: PlanInputs | None = None
        self.peak = PeakTracker(hub, conf["demand_period"])
        self.base = BaseLoadProfile(hub)
        self._said: dict[str, float] = {}  # shortfalls already logged, kWh

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def request(self, inputs: PlanInputs) -> None:
        if not self.conf["plan"]:
            return
        self._next = inputs
        if self._task is None or self._task.done():
            self._task = self.hub.create_task(self._run(), "smart charging plan")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._next is not None:
            inputs, self._next = self._next, None
            if not inputs.vehicles:
                self.plan = None
                self.version += 1
                continue
            problem = self.problem(inputs)
            # Seconds for a thousand vehicles (2.4 s on a depot day here): a thread keeps the
            # loop, and so every charger connection, live meanwhile.
            hint = peak_hint(self.peak.recent_peaks_kw, self.conf["peak_hint_factor"])
            result = await loop.run_in_executor(
                None,
                lambda p=problem, h=hint: plan_smart(
                    p, peak_hint_kw=h, time_limit=self.conf["plan_time_limit"]
                ),
            )
            self.plan = result
            self.version += 1  # which plan the engine's turns were decided on
            for short in result.shortfalls:
                # Every arrival re-plans: say it again only when it changed by a kWh or more.
                said = self._said.get(short.vehicle_id)
                if said is not None and abs(said - short.missing_kwh) < 1.0:
                    continue
                self._said[short.vehicle_id] = short.missing_kwh
                _LOGGER.warning(
                    "%s will be %.1f kWh short: %s", short.vehicle_id, short.missing_kwh,
                    short.reason,
                )  # fmt: skip
            short_now = {s.vehicle_id for s in result.shortfalls}
            self._said = {v: kwh for v, kwh in self._said.items() if v in short_now}
            self.hub.bus.fire(
                EVENT_PLANNED,
                {"status": result.status, "vehicles": len(problem.vehicles),
                 "cost": round(result.energy_cost + result.demand_charge, 4),
                 "shortfalls": [s.vehicle_id for s in result.shortfalls], "detail": result.detail},
            )  # fmt: skip

    def target(self, vehicle_id: str, now: datetime) -> tuple[float | None, str]:
        """The plan's kW for a session now, with why; (None, "") when there is no plan for it."""
        if self.plan is None or vehicle_id not in self.plan.power_kw:
            return None, ""
        kw = self.plan.power_at(vehicle_id, now)
        slot = slot_start(now).astimezone(self.hub.time_zone).strftime("%H:%M")
        price = self._prices()
        at = price.value_at(now) if price is not None else None
        cost = f", {at:.3f}/kWh" if at is not None else ""
        return kw, f"plan: {kw:.1f} kW in the {slot} slot{cost}"

    # --- the problem ------------------------------------------------------------------------
    def _prices(self) -> TimeSeries | None:
        return SignalStore.of(self.hub).get(f"prices.{self.conf['tariff']}")

    def cap_signals(self) -> dict[str, TimeSeries]:
        store = SignalStore.of(self.hub)
        return {name: series for name in store.names("caps.*") if (series := store.get(name))}

    def problem(self, inputs: PlanInputs) -> PlanProblem:
        start = slot_start(inputs.now)
        slots = int(self.conf["horizon_hours"] * 4)
        times = [start + i * SLOT for i in range(slots)]
        prices = self._prices()
        import_price = [self._value(prices, t, 0.0) for t in times]
        export = SignalStore.of(self.hub).get(f"prices.{self.conf['export_tariff']}")
        caps: dict[str, list[float | None]] = {}
        for name, series in self.cap_signals().items():
            node = name.removeprefix("caps.")
            node = self.site.root.id if node == "site" else node
            # The tightest value within each slot: a cap starting at 17:07 binds the 17:00 slot.
            caps[node] = [
                min((p.value for p in series.slots_between(t, t + SLOT)), default=None)
                for t in times
            ]
        for node, cap in inputs.node_caps.items():
            row = caps.setdefault(node, [None] * slots)
            caps[node] = [cap.kw if v is None else min(v, cap.kw) for v in row]
        return PlanProblem(
            start=start,
            slots=slots,
            site=self.site,
            import_price=import_price,
            export_price=[self._value(export, t, 0.0) for t in times] if export else None,
            base_load_kw=self.base.forecast(times, inputs.base_kw),
            caps_kw=caps,
            demand_charge=self._demand_charge(),
            peak_so_far_kw=self.peak.peak_kw,
            vehicles=inputs.vehicles,
        )

    @staticmethod
    def _value(series: TimeSeries | None, t: datetime, default: float) -> float:
        value = series.value_at(t) if series is not None else None
        return default if value is None else value

    def _demand_charge(self) -> float:
        if self.conf.get("demand_charge") is not None:
            return float(self.conf["demand_charge"])
        state = self.hub.states.get(f"tariff.{self.conf['tariff']}")
        charges = state.attributes.get("demand_charges") if state else None
        if not charges:
            return 0.0
        return float(max(c.get("rate", 0.0) for c in charges if isinstance(c, Mapping)))
