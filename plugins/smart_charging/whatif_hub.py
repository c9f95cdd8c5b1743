"""The hardware and the tariff around a real hub in `evhub plan`'s automation policies: chargers
as in-process `ChargerEntity`s whose vehicles draw what their limits allow, and the tariff entity.

Nothing connects anywhere. A vehicle follows a new limit at once and draws it until it is full;
its charger reports its meter once a minute (METER_S) and whenever its draw changes, and tells
the hub what the vehicle needs (energy, departure, power) as ISO 15118 chargers do. Every change
of draw is logged (`PowerLog`) so that the what-if `Meter` sees exactly what was drawn when.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.charging.charger import (
    ChargerCapability,
    ChargerData,
    ChargerEntity,
    ChargingSchedule,
    CommandResult,
    ConnectorStatus,
    RateUnit,
)
from hub.charging.session import EVENT_SESSION_STARTED, EVENT_SESSION_STOPPED
from hub.charging.signals import TimeSeries
from hub.charging.site import ChargerNode, Node, NodeKind, Site
from hub.entities import Entity, slugify

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub
    from plugins.smart_charging.whatif import Visit

METER_S = 60.0  # s between meter reports while a vehicle is plugged in (OCPP MeterValues)
FULL_KWH = 1e-6  # a vehicle this close to its goal is full: float rounding, not a need
UPCOMING_SLOTS = 200  # price slots the tariff entity shows ahead, as the tariffs plugin does
_CHILDREN = {NodeKind.PANEL: "panels", NodeKind.CIRCUIT: "circuits", NodeKind.CHARGER: "chargers"}


# --- the site as the hub sees it ------------------------------------------------------------------
def hub_site(site: Site) -> Site:
    """The same tree with a charger entity for every charger (`charger.<id>` where site.yaml
    names none, as in a quick look) and no meters: the what-if models no non-EV load."""

    def conf(node: Node) -> dict[str, Any]:
        out: dict[str, Any] = {"name": node.name}
        if node.max_power_kw is not None:
            out["max_power_kw"] = node.max_power_kw
        if isinstance(node, ChargerNode):
            if node.id != node.entity:  # a charger named by its entity alone has no id of its own
                out["id"] = node.id
            out |= {
                "entity": node.entity or f"charger.{slugify(node.id)}",
                "phases": node.phases,
                "phase_rotation": "".join(node.phase_rotation),
                "min_current": node.min_current,
                "dc": node.dc,
            }
            if node.rated_current is not None:
                out["max_current"] = node.rated_current
            return out
        out["id"] = node.id
        if any(a is not None for a in node.max_current):
            out["max_current"] = list(node.max_current)
        for child in node.children:
            out.setdefault(_CHILDREN[child.kind], []).append(conf(child))
        return out

    root = conf(site.root) | {"phases": site.phases, "voltage": site.voltage}
    return Site.from_config(root)


# --- what was drawn when --------------------------------------------------------------------------
class PowerLog:
    """Each visit's draw as a step function: (time, visit index, kW from then on), in time order,
    cut into what-if steps by `take`."""

    def __init__(self) -> None:
        self.kw: dict[int, float] = {}  # in force at the start of the step not yet taken
        self._pending: list[tuple[datetime, int, float]] = []

    def set(self, t: datetime, visit: int, kw: float) -> None:
        self._pending.append((t, visit, kw))

    def take(
        self, t0: datetime, t1: datetime
    ) -> tuple[dict[int, tuple[float, float]], list[dict[int, float]]]:
        """The step [t0, t1): per visit (highest kW, kWh), and the draws at each instant the
        power changed (after every change at that instant: what the breakers carry)."""
        hours = timedelta(hours=1)
        energy: dict[int, float] = {}
        highest: dict[int, float] = {}
        moments: list[dict[int, float]] = []
        now, cursor = dict(self.kw), t0
        rest = [c for c in self._pending if c[0] >= t1]
        changes = [c for c in self._pending if c[0] < t1]

        def accrue(until: datetime) -> None:
            for i, kw in now.items():
                energy[i] = energy.get(i, 0.0) + kw * ((until - cursor) / hours)

        k = 0
        while True:
            at = changes[k][0] if k < len(changes) else None
            if at is not None and at <= cursor:  # every change of this instant before a moment
                _, i, kw = changes[k]
                now[i] = kw
                k += 1
                continue
            moment = {i: kw for i, kw in now.items() if kw > 0}
            moments.append(moment)
            for i, kw in moment.items():
                highest[i] = max(highest.get(i, 0.0), kw)
            if at is None:
                break
            accrue(at)
            cursor = at
        accrue(t1)
        self.kw = {i: kw for i, kw in now.items() if kw > 0}
        self._pending = rest
        draws = {i: (highest.get(i, 0.0), e) for i, e in energy.items() if e > 0}
        return draws, moments


# --- chargers and vehicles ------------------------------------------------------------------------
class SimCharger(ChargerEntity):
    """One connector of the site and the vehicle on it: it draws min(limit, vehicle max) until
    the vehicle has what it came for; an AC limit below the charger's minimum current is a pause
    (IEC 61851), a DC charger takes its limit in W."""

    supported = frozenset({ChargerCapability.LIMIT_AMPS, ChargerCapability.LIMIT_WATTS})

    def __init__(self, node: ChargerNode, volts: float, log: PowerLog) -> None:
        assert node.entity is not None
        self._object_id = node.entity.split(".", 1)[1]
        phases = 3 if node.dc else node.phases
        super().__init__(
            f"whatif-{self._object_id}",
            node.name,
            data=ChargerData(status=ConnectorStatus.AVAILABLE, energy_wh=0.0, phases=phases),
        )
        self.node, self.volts, self.log, self.phases = node, volts, log, phases
        self.limit_kw = 0.0
        self.visit: int | None = None
        self.vehicle: str | None = None  # vehicle.<id> while it is here
        self.departure: datetime | None = None
        self.max_kw = 0.0
        self.need_kwh = 0.0
        self.kw = 0.0
        self.since: datetime | None = None
        self._full: Timer | None = None

    def suggested_object_id(self) -> str:
        return self._object_id

    @property
    def _now(self) -> datetime:
        assert self.hub is not None
        return self.hub.now()

    # --- what the engine tells it ---------------------------------------------------------------
    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        now = self._now
        limit = schedule.limit_at(now, now)
        value = 0.0 if limit is None else limit.value
        if schedule.unit is RateUnit.WATTS:
            self.limit_kw = value / 1000
        elif not self.node.dc and value < self.node.min_current - 1e-9:
            self.limit_kw = 0.0
        else:
            self.limit_kw = value * self.phases * self.volts / 1000
        self.data.limit = limit
        self._follow()
        return CommandResult(True, "Accepted")

    # --- a vehicle comes and goes ---------------------------------------------------------------
    def plug(self, index: int, visit: Visit) -> None:
        assert self.hub is not None
        request = visit.request
        self.visit, self.since = index, self._now
        self.max_kw, self.need_kwh = visit.max_kw, request.energy_kwh
        self.departure = visit.unplug
        self.vehicle = f"vehicle.{slugify(request.vehicle)}" if request.vehicle else None
        session = f"{self._object_id}-{index}"
        self.kw = self._target()
        self.update(
            status=self._status(), session_id=session, id_tag=request.vehicle or request.id,
            ev_energy_wh=request.energy_kwh * 1000, ev_departure=visit.unplug,
            ev_max_power_w=visit.max_kw * 1000, **self._reading(),
        )  # fmt: skip
        self.log.set(self._now, index, self.kw)
        self._arm()
        self._publish_vehicle()
        self.hub.bus.fire(
            EVENT_SESSION_STARTED,
            {"entity_id": self.entity_id, "session_id": session, "id_tag": self.data.id_tag},
        )

    def unplug(self) -> None:
        assert self.hub is not None
        if self.visit is None:
            return
        self._accrue()
        self.log.set(self._now, self.visit, 0.0)
        session, vehicle = self.data.session_id, self.vehicle
        # A limit lasts for its session (OCPP's TxProfile): the next car starts at 0 until the
        # engine's round gives it its share, as the engine's idle default would have it.
        self.visit, self.vehicle, self.kw, self.limit_kw = None, None, 0.0, 0.0
        self._disarm()
        self.update(
            status=ConnectorStatus.AVAILABLE, session_id=None, id_tag=None, ev_energy_wh=None,
            ev_departure=None, ev_max_power_w=None, limit=None, **self._reading(),
        )  # fmt: skip
        if vehicle is not None:
            self.hub.states.set(vehicle, None, {"charger": None}, unit="%")
        stopped = {"entity_id": self.entity_id, "session_id": session}
        self.hub.bus.fire(EVENT_SESSION_STOPPED, stopped)

    def report(self) -> None:
        """A meter report: the register and the vehicle's need as of now."""
        if self.visit is None or self.kw <= 0:
            return
        self._accrue()
        self.update(**self._reading())
        self._publish_vehicle()

    # --- drawing ------------------------------------------------------------------------------
    def _target(self) -> float:
        return min(self.limit_kw, self.max_kw) if self.need_kwh > FULL_KWH else 0.0

    def _follow(self) -> None:
        """A new limit or a full battery: draw what is allowed from now on."""
        if self.visit is None:
            return
        self._accrue()
        kw = self._target()
        if kw == self.kw:
            return
        self.kw = kw
        self.log.set(self._now, self.visit, kw)
        self.update(status=self._status(), **self._reading())
        self._arm()

    def _accrue(self) -> None:
        now = self._now
        if self.since is not None and self.kw > 0:
            kwh = min(self.kw * ((now - self.since) / timedelta(hours=1)), self.need_kwh)
            self.need_kwh = max(0.0, self.need_kwh - kwh)
            self.data.energy_wh = (self.data.energy_wh or 0.0) + kwh * 1000
        self.since = now

    def _arm(self) -> None:
        """A timer at the instant the vehicle is full at this draw."""
        self._disarm()
        if self.kw > 0 and self.hub is not None:
            self._full = self.hub.clock.call_later(self.need_kwh / self.kw * 3600, self._filled)

    def _disarm(self) -> None:
        if self._full is not None:
            self._full.cancel()
            self._full = None

    def _filled(self) -> None:
        self._full = None
        self._accrue()
        self.need_kwh = 0.0  # the timer's microsecond rounding is no energy still wanted
        self._follow()
        self._publish_vehicle()

    def _status(self) -> ConnectorStatus:
        if self.kw > 0:
            return ConnectorStatus.CHARGING
        full = self.need_kwh <= FULL_KWH
        return ConnectorStatus.SUSPENDED_EV if full else ConnectorStatus.SUSPENDED_EVSE

    def _reading(self) -> dict[str, Any]:
        amps = self.kw * 1000 / (self.phases * self.volts)
        per_phase = tuple(amps if p < self.phases else 0.0 for p in range(3))
        return {"power_w": self.kw * 1000, "current_a": per_phase, "energy_wh": self.data.energy_wh}

    def _publish_vehicle(self) -> None:
        """`vehicle.<id>` as a fleet integration shows it (state of charge unknown)."""
        if self.vehicle is None or self.hub is None or self.departure is None:
            return
        attrs = {
            "friendly_name": self.vehicle.split(".", 1)[1],
            "charger": self.entity_id,
            "departure": self.departure.isoformat(),
            "energy_needed_kwh": round(self.need_kwh, 3),
            "charge_kw": self.max_kw,
        }
        self.hub.states.set(self.vehicle, None, attrs, unit="%")


def site_meter(hub: Hub, entity_id: str, chargers: Sequence[SimCharger], volts: float) -> None:
    """The grid meter's reading, for automations that read it: what the chargers draw."""
    amps = [0.0, 0.0, 0.0]
    for charger in chargers:
        per_phase = charger.kw * 1000 / (charger.phases * volts)
        for phase in charger.node.phase_rotation[: charger.phases]:
            amps[phase.index] += per_phase
    kw = sum(c.kw for c in chargers)
    hub.states.set(entity_id, round(kw, 3), {"current_a": [round(a, 2) for a in amps]}, unit="kW")


# --- the tariff -----------------------------------------------------------------------------------
class SimTariff(Entity):
    """`tariff.<name>`: the price now as its state, the coming slots and the demand charge as
    attributes, re-written at every price edge: what the tariffs plugin shows the automations."""

    domain = "tariff"

    def __init__(self, name: str, series: TimeSeries, demand_charge: float) -> None:
        super().__init__(f"whatif-{name}", name)
        self.series, self.signal, self.demand_charge = series, f"prices.{name}", demand_charge
        self._timer: Timer | None = None
        self._object_id = name

    def suggested_object_id(self) -> str:
        return self._object_id

    @property
    def unit(self) -> str | None:
        return self.series.unit or None

    def native_state(self) -> Any:
        price = self.series.value_at(self._now())
        return None if price is None else round(price, 6)

    def _now(self) -> datetime:
        assert self.hub is not None
        return self.hub.now()

    def state_attributes(self) -> Mapping[str, Any]:
        now = self._now()
        upcoming = self.series.slots_between(now, self.series.end or now, clip=False)
        edge = self._next_edge()
        charges = [{"name": "demand", "rate": self.demand_charge, "windows": None}]
        return {
            "kind": "import",
            "signal": self.signal,
            "source": "evhub plan",
            "slots": [
                {"start": s.start.isoformat(), "end": s.end.isoformat(), "price": round(s.value, 6)}
                for s in upcoming[:UPCOMING_SLOTS]
            ],
            "next_change": None if edge is None else edge.isoformat(),
            "demand_charges": charges if self.demand_charge > 0 else [],
        }

    def _next_edge(self) -> datetime | None:
        now = self._now()
        for slot in self.series.slots_between(now, self.series.end or now, clip=False):
            for edge in (slot.start, slot.end):
                if edge > now:
                    return edge
        start = self.series.start
        return start if start is not None and start > now else None

    async def added_to_hub(self) -> None:
        self._arm()

    async def removed_from_hub(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _arm(self) -> None:
        edge = self._next_edge()
        if edge is not None and self.hub is not None:
            self._timer = self.hub.clock.call_at(edge, self._tick)

    def _tick(self) -> None:
        self.write_state()
        self._arm()
