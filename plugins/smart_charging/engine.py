"""The smart-charging engine: measures the site, runs the allocator every few seconds and on every
relevant event, sends the limits that changed, explains each one, and keeps the optimizer's plan.

Protocol-neutral: it sees chargers only as `ChargerEntity`s named in the site tree.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.bus import EVENT_STATE_CHANGED, Event
from hub.charging.charger import ChargerEntity, ChargingSchedule, RateUnit
from hub.charging.site import ChargerNode, Site
from plugins.smart_charging import nodes
from plugins.smart_charging.allocator import Allocation, Cap, SessionDemand, allocate
from plugins.smart_charging.hysteresis import complies, draws_less
from plugins.smart_charging.optimizer import VehicleNeed
from plugins.smart_charging.planning import CEILING_MARGIN, PlanInputs, Planner, slot_start
from plugins.smart_charging.turns import Turns

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

EVENT_ALLOCATED = "smart_charging_allocated"
IDLE_REASON = "idle: 0 A until a session gets its share"
ROUND_DEBOUNCE = 0.5  # s: a burst of events (ten chargers reporting at once) is one round
PLAN_WAIT = timedelta(seconds=60)  # a new session waits this long for its plan, then shares


@dataclass(slots=True)
class Goal:
    energy_kwh: float | None = None
    departure: datetime | None = None
    target_soc: float | None = None


@dataclass(slots=True)
class Tracked:
    """A session on a managed charger, as the engine follows it."""

    entity_id: str
    session_id: str | None
    arrived: datetime
    register_wh: float | None  # the meter when it arrived: delivered = now - this
    last_command_a: float | None = None
    commanded_at: datetime | None = None
    measured_at: datetime | None = None  # when the charger last reported a new current
    under_since: datetime | None = None
    priority: int = 0
    paused: bool = False
    goal: Goal = field(default_factory=Goal)  # set by hand (charging.set_vehicle_goal)
    ev_goal: Goal = field(default_factory=Goal)  # what the vehicle asked for (ISO 15118)
    ev_max_kw: float | None = None
    ev_sent: tuple[Any, ...] | None = None  # the needs ev_goal was made from


def _new_reading(old: Any, new: Any) -> bool:
    """A meter report arrived: a charger that draws anything moves its energy register."""
    return any(
        new.attributes.get(key) != old.attributes.get(key)
        for key in ("current_a", "energy_wh", "power_w")
    )


class Engine:
    def __init__(self, hub: Hub, site: Site, conf: Mapping[str, Any]) -> None:
        self.hub = hub
        self.site = site
        self.conf = conf
        self.nodes: dict[str, ChargerNode] = {n.entity or n.id: n for n in site.chargers()}
        self.sessions: dict[str, Tracked] = {}
        self.node_caps: dict[str, Cap] = {}  # charging.set_site_limit / set_node_limit
        self.charger_caps: dict[str, float] = {}  # charging.set_charger_limit, amps
        self.emergency = False
        self.planner = Planner(hub, site, conf)
        self._timer: Timer | None = None
        self._pending: Timer | None = None
        self._unsubscribe: list[Any] = []
        self._warned: set[str] = set()
        # Idle chargers hold a 0 A default limit: a car that plugs in waits for its share
        # instead of drawing the charger's maximum until the next round (and tripping a breaker
        # when several arrive at once). What each was last told, so it is sent once.
        self._idle: dict[str, float] = {}
        self._cap_timer: Timer | None = None
        self.turns = Turns()
        self._planned_hour: datetime | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.planner.peak.load()
        self.planner.base.load()
        bus = self.hub.bus
        self._unsubscribe = [
            bus.listen(EVENT_STATE_CHANGED, self._on_state, self._managed),
            bus.listen("signal_updated", self._on_signal),
        ]
        for entity_id in self.nodes:
            state = self.hub.states.get(entity_id)
            if state is not None and state.attributes.get("session_id"):
                self._arrive(entity_id, state.attributes)
        self._schedule()

    def _on_signal(self, event: Event) -> None:
        self.planner.request(self.inputs())
        if str(event.data.get("name", "")).startswith("caps."):
            # A cap published, moved or released applies now, not at the next tick, and every
            # later step of it (a ramp, its end) at the second it starts.
            self.request_round()
            self._watch_caps()

    def _watch_caps(self) -> None:
        if self._cap_timer is not None:
            self._cap_timer.cancel()
            self._cap_timer = None
        now = self.hub.now()
        edges = [
            edge
            for series in self.planner.cap_signals().values()
            for slot in series.slots
            for edge in (slot.start, slot.end)
            if edge > now
        ]
        if edges:
            self._cap_timer = self.hub.clock.call_at(min(edges), self._cap_edge)

    def _cap_edge(self) -> None:
        self._cap_timer = None
        self.hub.create_task(self.round(), "smart charging round at a cap's edge")
        self._watch_caps()

    def stop(self) -> None:
        if self._cap_timer is not None:
            self._cap_timer.cancel()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for timer in (self._timer, self._pending):
            if timer is not None:
                timer.cancel()
        self.planner.stop()

    def _schedule(self) -> None:
        self._timer = self.hub.clock.call_later(self.conf["interval"], self._tick)

    def _tick(self) -> None:
        self._schedule()
        self.hub.create_task(self.round(), "smart charging round")

    def request_round(self) -> None:
        if self._pending is None:
            self._pending = self.hub.clock.call_later(ROUND_DEBOUNCE, self._debounced)

    def _debounced(self) -> None:
        self._pending = None
        self.hub.create_task(self.round(), "smart charging round")

    # --- sessions come and go -----------------------------------------------------------------
    def _managed(self, data: Mapping[str, Any]) -> bool:
        return data["entity_id"] in self.nodes

    def _on_state(self, event: Event) -> None:
        entity_id = event.data["entity_id"]
        new = event.data["new_state"]
        if new is None or new.state in ("offline", "unavailable"):
            self._idle.pop(entity_id, None)  # it may come back with its own default: tell again
        elif entity_id not in self.sessions and self._idle.get(entity_id) != 0.0:
            self.request_round()  # a charger just (re)appeared: its 0 A default goes out now
        session = new.attributes.get("session_id") if new is not None else None
        tracked = self.sessions.get(entity_id)
        old = event.data["old_state"]
        if tracked is not None and old is not None and new is not None and _new_reading(old, new):
            tracked.measured_at = self.hub.now()
        if tracked is not None and new is not None and tracked.session_id == session:
            self._ev_needs(tracked, new.attributes)
        if session and (tracked is None or tracked.session_id != session):
            self._idle.pop(entity_id, None)
            self._arrive(entity_id, new.attributes)
        elif not session and tracked is not None:
            del self.sessions[entity_id]
            self.planner.request(self.inputs())
            self.request_round()

    def _arrive(self, entity_id: str, attributes: Mapping[str, Any]) -> None:
        tracked = self.sessions[entity_id] = Tracked(
            entity_id, attributes.get("session_id"), self.hub.now(), attributes.get("energy_wh")
        )
        self._ev_needs(tracked, attributes, replan=False)
        self.planner.request(self.inputs())
        self.request_round()

    # --- one allocation round ---------------------------------------------------------------
    async def round(self) -> list[Allocation]:
        if self.emergency:
            await self._stop_all("emergency stop: held until charging.release")
            return []
        now = self.hub.now()
        hour = slot_start(now).replace(minute=0)
        if self.sessions and hour != self._planned_hour:
            # Every hour: what the last one delivered (turns, cars drawing less, rounding) is
            # spread again over what is left, as `evhub plan` does.
            self._planned_hour = hour
            self.planner.request(self.inputs())
        self.turns.decide(self, now)
        demands, paused = [], []
        for tracked in self.sessions.values():
            entity = self._entity(tracked.entity_id)
            if entity is None:
                continue
            if tracked.paused:
                paused.append(tracked)
                continue
            demands.append(self._demand(tracked, entity, now))
        try:
            allocations = allocate(
                self.site, demands, self._non_ev_load(), self._caps(now),
                hysteresis_a=self.conf["hysteresis_a"],
            )  # fmt: skip
        except Exception:
            # A bug here must not leave chargers at whatever they had: stop until it is fixed.
            _LOGGER.exception("allocation failed; pausing every session until it works again")
            await self._stop_all("allocation failed: paused for safety")
            return []

        # Lower limits first, and only once they are acknowledged the higher ones: two chargers
        # trading capacity must never both hold their larger share at the same moment.
        def lower(a: Allocation) -> bool:
            last = self.sessions[a.charger].last_command_a if a.charger in self.sessions else None
            return last is None or a.current_a < last

        decreases = [self._apply(a, now) for a in allocations if lower(a)]
        await asyncio.gather(*(s for s in decreases if s is not None))
        sends = [self._apply(a, now) for a in allocations if not lower(a)]
        for t in paused:
            if t.last_command_a != 0:
                sends.append(self._command(t, 0.0, "paused by charging.pause", now))
        for entity_id in self.nodes:
            if entity_id not in self.sessions and self._idle.get(entity_id) != 0.0:
                sends.append(self._idle_default(entity_id))
        await asyncio.gather(*(s for s in sends if s is not None))
        self._publish_nodes(now)
        self.planner.peak.sample(self._site_import_kw())
        self.planner.base.sample(self._base_kw())
        self.hub.bus.fire(EVENT_ALLOCATED, {"allocations": len(allocations), "time": now})
        return allocations

    def _demand(self, t: Tracked, entity: ChargerEntity, now: datetime) -> SessionDemand:
        data = entity.data
        measured = tuple(a or 0.0 for a in data.current_a) if data.current_a else None
        # Judge obedience by a reading taken after the command had time to act, not by the
        # last reading, which may predate the command by a whole meter interval.
        since = 0.0
        if t.commanded_at is not None and t.measured_at is not None:
            since = (t.measured_at - t.commanded_at).total_seconds()
        ok = complies(measured, t.last_command_a, since, tolerance_a=self.conf["tolerance_a"])
        if draws_less(measured, t.last_command_a):
            t.under_since = t.under_since or now
        else:
            t.under_since = None
        target_kw, why = self.planner.target(t.entity_id, now)
        if target_kw is None and self.conf["plan"] and now - t.arrived < PLAN_WAIT:
            # Its plan is seconds away: a fair share meanwhile would set the period's peak for
            # a moment, and a peak once paid is filled for the rest of the month.
            target_kw, why = 0.0, "waiting for its plan"
        turn = self.turns.targets.get(t.entity_id)
        low = self.turns.minimum.get(t.entity_id, 0.0)
        below = target_kw is not None and 0 < target_kw < low
        urgent = turn is not None and target_kw is not None and turn > target_kw + 1e-9
        urgent = urgent and not below
        if target_kw is not None and turn is not None and (below or urgent):
            # Below the minimum the plan cannot be followed as such: this quarter it charges
            # at the minimum or waits, and the cars planned so take turns.
            turns = "its turn at the minimum" if turn > 0 else "waiting its turn"
            state = f"{turn:.1f} kW: it cannot wait" if urgent else f"below the AC minimum: {turns}"
            why = f"{why}, {state} this quarter"
            target_kw = turn
        return SessionDemand(
            t.entity_id,
            # A car that cannot wait comes first among its peers where a limit binds.
            priority=2 * t.priority + int(urgent),
            phases=data.phases,
            measured_a=measured,
            target_kw=target_kw,
            target_reason=why,
            last_command_a=t.last_command_a,
            under_draw_s=(now - t.under_since).total_seconds() if t.under_since else 0.0,
            complying=ok,
        )

    def _apply(self, a: Allocation, now: datetime) -> Any:
        tracked = self.sessions.get(a.charger)
        entity = self._entity(a.charger)
        if tracked is None or entity is None:
            return None
        if entity.data.limit_reason != a.binding:
            entity.data.limit_reason = a.binding
            entity.write_state()
        if not a.send:
            return None
        return self._command(tracked, a.current_a, a.binding, now, kw=a.power_kw if a.dc else None)

    async def _command(
        self, t: Tracked, amps: float, why: str, now: datetime, kw: float | None = None
    ) -> None:
        entity = self._entity(t.entity_id)
        if entity is None:
            return
        schedule = (
            ChargingSchedule.constant(kw * 1000, RateUnit.WATTS)
            if kw is not None
            else ChargingSchedule.constant(amps, RateUnit.AMPS)
        )
        t.last_command_a, t.commanded_at = amps, now
        if entity.data.limit_reason != why:
            entity.data.limit_reason = why
            entity.write_state()
        try:
            result = await entity.set_limit(schedule)
        except Exception as err:  # offline, refused, timed out: next round tries again
            t.last_command_a = None
            self._warn_once(t.entity_id, f"{t.entity_id}: limit {amps:.1f} A not set: {err}")
            return
        if not result.accepted:
            t.last_command_a = None
            self._warn_once(t.entity_id, f"{t.entity_id} refused its limit: {result.detail}")

    async def _idle_default(self, entity_id: str) -> None:
        entity = self._entity(entity_id)
        if entity is None or str(entity.data.status) in ("offline", "unavailable"):
            return
        self._idle[entity_id] = 0.0
        entity.data.limit_reason = IDLE_REASON
        entity.write_state()
        try:
            result = await entity.set_limit(ChargingSchedule.constant(0.0, RateUnit.AMPS))
        except Exception as err:
            self._idle.pop(entity_id, None)
            self._warn_once(entity_id, f"{entity_id}: idle default limit not set: {err}")
            return
        if not result.accepted:
            self._idle.pop(entity_id, None)

    async def _stop_all(self, why: str) -> None:
        now = self.hub.now()
        await asyncio.gather(
            *(self._command(t, 0.0, why, now) for t in self.sessions.values()
              if t.last_command_a != 0)
        )  # fmt: skip

    # --- what the allocator is given --------------------------------------------------------
    def _entity(self, entity_id: str) -> ChargerEntity | None:
        entity = self.hub.entities.live(entity_id)
        return entity if isinstance(entity, ChargerEntity) else None

    def _publish_nodes(self, now: datetime) -> None:
        amps = {}
        for entity_id, node in self.nodes.items():
            entity = self._entity(entity_id)
            if entity is not None and entity.data.current_a:
                amps[node.id] = tuple(a or 0.0 for a in entity.data.current_a)
        base = self._non_ev_load()[self.site.root.id]
        nodes.publish(self.hub, self.site, nodes.node_loads(self.site, amps, base), self._caps(now))

    def _site_import_kw(self) -> float:
        """What the grid meter reads (the demand charge's measure), else what the chargers draw."""
        meter = self.site.meters.get("grid") if self.site.meters else None
        state = self.hub.states.get(meter) if meter else None
        if state is not None and state.available and isinstance(state.state, int | float):
            return float(state.state) / (1 if state.unit == "kW" else 1000)
        total = 0.0
        for entity_id in self.nodes:
            entity = self._entity(entity_id)
            if entity is not None and entity.data.power_w:
                total += entity.data.power_w / 1000
        return total

    def _non_ev_load(self) -> dict[str, tuple[float, float, float]]:
        """Root non-EV amps per grid phase: the grid meter minus what the chargers draw."""
        meter = self.site.meters.get("grid") if self.site.meters else None
        state = self.hub.states.get(meter) if meter else None
        if state is None or not state.available or state.state is None:
            if meter:
                self._warn_once(meter, f"grid meter {meter} gives no reading: counting 0 A")
            return {self.site.root.id: (0.0, 0.0, 0.0)}
        per_phase = state.attributes.get("current_a")
        if isinstance(per_phase, list | tuple) and len(per_phase) == 3:
            grid = [float(a or 0) for a in per_phase]
        else:
            watts = float(state.state) * (1000 if state.unit == "kW" else 1)
            grid = [watts / (3 * self.site.voltage)] * 3
        for entity_id, node in self.nodes.items():
            entity = self._entity(entity_id)
            if entity is None or not entity.data.current_a:
                continue
            for charger_phase, grid_phase in enumerate(self.site.charger_phase_map(node)):
                if charger_phase < len(entity.data.current_a):
                    grid[grid_phase.index] -= entity.data.current_a[charger_phase] or 0.0
        return {self.site.root.id: (grid[0], grid[1], grid[2])}

    def _caps(self, now: datetime) -> dict[str, Cap]:
        caps = dict(self.node_caps)
        for name, series in self.planner.cap_signals().items():
            kw = series.value_at(now)
            node = name.removeprefix("caps.")
            node = self.site.root.id if node == "site" else node
            if kw is not None and (node not in caps or kw < caps[node].kw):
                caps[node] = Cap(kw, f"{name} {kw:g} kW")
        for entity_id, amps in self.charger_caps.items():
            node = self.nodes.get(entity_id)
            if node is not None:
                volts = self.site.voltage * node.phases
                caps[node.id] = Cap(amps * volts / 1000, f"charger limit {amps:g} A")
        return caps

    def inputs(self) -> PlanInputs:
        """The optimizer's view: one goal per session (a default one when nobody set it)."""
        now = self.hub.now()
        vehicles = []
        for t in self.sessions.values():
            if t.paused:
                continue
            left, max_kw = self.need(t)
            vehicles.append(
                VehicleNeed(
                    id=t.entity_id,
                    charger=t.entity_id,
                    # The plan counts whole slots: a car already here uses the current one too,
                    # or it would be paused until the next quarter hour.
                    arrival=slot_start(now),
                    departure=max(self.departure(t), now + timedelta(minutes=15)),
                    energy_kwh=left,
                    # Planned a little below its most: a car the plan fills at full power to
                    # the minute ends short of the last few kWh a charger's rounding, a shared
                    # breaker or a late meter reading took; this is the room to catch up.
                    max_kw=max_kw * (1 - CEILING_MARGIN),
                )
            )
        return PlanInputs(tuple(vehicles), dict(self.node_caps), self._base_kw(), now)

    def need(self, t: Tracked) -> tuple[float, float]:
        """kWh the session still wants, and the most kW it can take."""
        node = self.nodes[t.entity_id]
        wanted = t.goal.energy_kwh
        if wanted is None:
            wanted = t.ev_goal.energy_kwh
        if wanted is None:
            wanted = self.conf["default_energy_kwh"]
        if node.dc:
            max_kw = node.max_power_kw or 50.0
        else:
            max_kw = (node.rated_current or 32.0) * node.phases * self.site.voltage / 1000
        if t.ev_max_kw is not None:
            max_kw = min(max_kw, t.ev_max_kw)
        return max(0.0, wanted - self.delivered_kwh(t)), max_kw

    def _base_kw(self) -> float:
        base = self._non_ev_load()[self.site.root.id]
        return max(0.0, sum(base) * self.site.voltage / 1000)

    def _ev_needs(self, t: Tracked, attributes: Mapping[str, Any], *, replan: bool = True) -> None:
        """Take the vehicle's own request (ISO 15118 needs) as its goal when it sends a new one.

        The energy it asks for is counted from when it asked: a car that reports 30 kWh after
        taking 5 wants 35 in the session.
        """
        sent = tuple(attributes.get(k) for k in ("ev_energy_wh", "ev_departure", "ev_max_power_w"))
        if sent == t.ev_sent:
            return
        t.ev_sent = sent
        energy_wh, departure, max_w = sent
        t.ev_goal = Goal(
            energy_kwh=None if energy_wh is None else self.delivered_kwh(t) + energy_wh / 1000,
            departure=datetime.fromisoformat(departure) if isinstance(departure, str) else None,
        )
        t.ev_max_kw = None if not max_w else max_w / 1000
        if replan:
            self.planner.request(self.inputs())

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _LOGGER.warning(message)

    def delivered_kwh(self, t: Tracked) -> float:
        entity = self._entity(t.entity_id)
        now_wh = entity.data.energy_wh if entity else None
        if now_wh is None or t.register_wh is None:
            return 0.0
        return max(0.0, (now_wh - t.register_wh) / 1000)

    def departure(self, t: Tracked) -> datetime:
        default = t.arrived + timedelta(hours=self.conf["default_dwell_hours"])
        return t.goal.departure or t.ev_goal.departure or default
