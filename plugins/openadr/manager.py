"""The demand-response state of one hub: known events, their phases on the hub clock, the caps
they publish (`caps.<node>`), opt decisions, compliance, the `demand_response` bus event.

Sources (the OpenADR VEN, grid signal feeds) hand it events; it never talks to the outside.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hub.bus import EVENT_STATE_CHANGED, Context, Event
from hub.charging.signals import SignalStore, Slot, TimeSeries
from hub.clock import Timer
from plugins.openadr.compliance import LoadMeter, Tally
from plugins.openadr.entities import build_entities
from plugins.openadr.model import UNIT, DrEvent, Opt, Status, node_caps, signal_name, strictest

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.entities import Entity
    from plugins.openadr.store import Journal

_LOGGER = logging.getLogger(__name__)

EVENT_DEMAND_RESPONSE = "demand_response"
PHASES = ("received", "start", "end", "cancelled")


@dataclass(frozen=True, slots=True)
class Settings:
    node: str = "site"
    tolerance_kw: float = 0.0
    load_entity: str | None = None
    default_opt: Opt = Opt.IN
    meters: Mapping[str, str] = field(default_factory=dict)  # node -> sensor, beyond the default


class DemandResponse:
    def __init__(self, hub: Hub, settings: Settings, journal: Journal) -> None:
        self.hub = hub
        self.settings = settings
        self.journal = journal
        self.events: dict[str, DrEvent] = {}
        self.opt_senders: dict[str, Callable[[DrEvent], Any]] = {}  # source -> tell it our opt
        self.entities: list[Entity] = build_entities(self)
        self._timers: dict[str, list[Timer]] = {}
        self._tallies: dict[str, Tally] = {}
        self._meters: dict[str, LoadMeter] = {}
        self._published: dict[str, TimeSeries] = {}
        self._edge: Timer | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.journal.start()
        await self.hub.entities.add("openadr", self.entities)
        self._unsubscribe = self.hub.bus.listen(
            EVENT_STATE_CHANGED, self._on_state, lambda d: d["entity_id"] in self._watched()
        )
        for event in await self.journal.open_events(self.hub.now()):
            # Last known events stay in force across a restart, whether or not the source is up.
            _LOGGER.info("demand response: restoring event %s (%s)", event.event_id, event.source)
            self._keep(event)
            self.journal.log(event.event_id, "restored")
        self._publish()
        self._refresh()

    def stop(self) -> None:
        now = self.hub.now()
        for event_id, tally in list(self._tallies.items()):
            tally.point(now, None, None)
            self.journal.save(self.events[event_id], tally.result())
        self._tallies.clear()
        for timers in self._timers.values():
            for timer in timers:
                timer.cancel()
        self._timers.clear()
        if self._edge is not None:
            self._edge.cancel()
        if self._unsubscribe is not None:
            self._unsubscribe()

    # --- what sources call ----------------------------------------------------------------
    def upsert(self, event: DrEvent, context: Context | None = None) -> Opt:
        """A new or modified event; returns the opt to answer with. Never raises on its input."""
        root = self.hub.site.root.id if self.hub.site is not None else None
        if event.node == root:
            event.node = "site"  # one signal per node: caps.site, not also caps.<root id>
        old = self.events.get(event.event_id)
        if old is not None:
            if old.status in (Status.CANCELLED, Status.COMPLETED):
                return old.opt  # a late copy of something already over
            if event.status is Status.CANCELLED:
                self.cancel(event.event_id, "cancelled by the source", context)
                return old.opt
            if old.modification == event.modification and old.slots == event.slots:
                return old.opt  # the same event delivered again (every poll repeats it)
            event.received_at = old.received_at
            if old.opt_by != "default":
                event.opt, event.opt_by = old.opt, old.opt_by  # a decision outlives a modification
            event.status = old.status
        elif event.status is Status.CANCELLED:
            return event.opt  # cancelled before we ever saw it: nothing to do
        self._keep(event)
        kind = "received" if old is None else "modified"
        self.journal.save(event)
        self.journal.log(event.event_id, kind, event.as_dict())
        _LOGGER.info(
            "demand response: %s event %s on %s, %s to %s, cap %s kW, opt %s",
            kind, event.event_id, event.node, event.start.isoformat(), event.end.isoformat(),
            event.cap_kw, event.opt,
        )  # fmt: skip
        self._publish()
        self._fire(event, "received", context)
        if old is None and event.status is Status.ACTIVE:
            self._fire(event, "start", context)  # it began before we knew of it
        self._refresh()
        return event.opt

    def cancel(self, event_id: str, reason: str, context: Context | None = None) -> bool:
        event = self.events.get(event_id)
        if event is None or event.status in (Status.CANCELLED, Status.COMPLETED):
            return False
        compliance = self._close_tally(event_id)
        event.status = Status.CANCELLED
        self._cancel_timers(event_id)
        self.journal.save(event, compliance)
        self.journal.log(event_id, "cancelled", {"reason": reason, "compliance": compliance})
        _LOGGER.info("demand response: event %s cancelled (%s)", event_id, reason)
        self._publish()
        self._fire(event, "cancelled", context)
        self._refresh()
        return True

    def extend(self, event_id: str, end: datetime) -> None:
        """A held value seen again (a grid signal without an end): it lasts until `end` now.
        Quietly: no new phase, no bus event; the record follows."""
        event = self.events.get(event_id)
        if event is None or event.status not in (Status.PENDING, Status.ACTIVE) or end <= event.end:
            return
        last = event.slots[-1] if event.slots else None
        if last is not None and last.end == event.end:
            event.slots = (*event.slots[:-1], Slot(last.start, end, last.value))
        event.end = end
        self._keep(event)
        self.journal.save(event)
        self._publish()
        self._refresh()

    def withdraw_missing(self, source: str, present: Iterable[str], context: Any = None) -> None:
        """A source's complete list of events: those it no longer lists are cancelled."""
        keep = set(present)
        for event in list(self.events.values()):
            if event.source == source and event.event_id not in keep:
                self.cancel(event.event_id, f"no longer listed by {source}", context)

    def set_opt(self, event_id: str, opt: Opt, by: str = "service") -> DrEvent:
        event = self.events.get(event_id)
        if event is None:
            raise LookupError(f"no demand-response event {event_id!r}")
        if event.status in (Status.CANCELLED, Status.COMPLETED):
            raise ValueError(f"event {event_id} is {event.status}: too late to opt {opt}")
        changed = event.opt is not opt
        event.opt, event.opt_by = opt, by
        now = self.hub.now()
        if changed and event.status is Status.ACTIVE:
            if opt is Opt.IN:
                self._open_tally(event)
            else:
                self.journal.save(event, self._close_tally(event_id))
        self.journal.save(event)
        self.journal.log(event_id, "opt", {"opt": str(opt), "by": by, "at": now.isoformat()})
        _LOGGER.info("demand response: opted %s of event %s (%s)", opt, event_id, by)
        if changed:
            self._publish()
            self._refresh()
        sender = self.opt_senders.get(event.source)
        if sender is not None:
            sender(event)
        return event

    # --- reading --------------------------------------------------------------------------
    def active(self) -> list[DrEvent]:
        return [e for e in self.events.values() if e.status is Status.ACTIVE and e.opt is Opt.IN]

    def upcoming(self) -> list[DrEvent]:
        pending = [e for e in self.events.values() if e.status is Status.PENDING]
        return sorted(pending, key=lambda e: e.start)

    def caps_now(self) -> dict[str, float]:
        now = self.hub.now()
        return {
            node: value
            for node, series in self._published.items()
            if (value := series.value_at(now)) is not None
        }

    def meter(self, node: str) -> LoadMeter:
        meter = self._meters.get(node)
        if meter is None:
            entity = self.settings.meters.get(node)
            if entity is None and node == self.settings.node:
                entity = self.settings.load_entity
            meter = self._meters[node] = LoadMeter(self.hub, node, entity)
        return meter

    # --- phases on the hub clock -----------------------------------------------------------
    def _keep(self, event: DrEvent) -> None:
        now = self.hub.now()
        if event.end <= now:
            event.status = Status.COMPLETED
            compliance = self._close_tally(event.event_id)  # modified to end in the past
            if compliance is not None:
                self.journal.save(event, compliance)
        elif event.start <= now:
            event.status = Status.ACTIVE
        self.events[event.event_id] = event
        self._cancel_timers(event.event_id)
        timers = []
        if event.status is Status.PENDING:
            timers.append(self.hub.clock.call_at(event.start, lambda: self._begin(event.event_id)))
        if event.status in (Status.PENDING, Status.ACTIVE):
            timers.append(self.hub.clock.call_at(event.end, lambda: self._finish(event.event_id)))
        self._timers[event.event_id] = timers
        if event.status is Status.ACTIVE and event.opt is Opt.IN:
            self._open_tally(event)

    def _begin(self, event_id: str) -> None:
        event = self.events.get(event_id)
        if event is None or event.status is not Status.PENDING:
            return
        event.status = Status.ACTIVE
        if event.opt is Opt.IN:
            self._open_tally(event)
        self.journal.save(event)
        self.journal.log(event_id, "start", {"opt": str(event.opt), "cap_kw": event.cap_kw})
        # Published again at the exact second: readers that act on `signal_updated` see it now.
        self._publish(force=True)
        self._fire(event, "start")
        self._refresh()

    def _finish(self, event_id: str) -> None:
        event = self.events.get(event_id)
        if event is None or event.status not in (Status.PENDING, Status.ACTIVE):
            return
        compliance = self._close_tally(event_id)
        event.status = Status.COMPLETED
        self._timers.pop(event_id, None)
        self.journal.save(event, compliance)
        self.journal.log(event_id, "end", {"opt": str(event.opt), "compliance": compliance})
        if compliance is not None:
            _LOGGER.info("demand response: event %s ended: %s", event_id, compliance)
        self._publish(force=True)
        self._fire(event, "end")
        self._refresh()

    def _cancel_timers(self, event_id: str) -> None:
        for timer in self._timers.pop(event_id, ()):
            timer.cancel()

    def _fire(self, event: DrEvent, phase: str, context: Context | None = None) -> None:
        self.hub.bus.fire(
            EVENT_DEMAND_RESPONSE,
            {
                "event_id": event.event_id,
                "phase": phase,
                "node": event.node,
                "cap_kw": event.cap_kw,
                "level": event.level,
                "start": event.start.isoformat(),
                "end": event.end.isoformat(),
                "signal_name": event.signal_name,
                "opt": str(event.opt),
            },
            context,
        )

    # --- caps -----------------------------------------------------------------------------
    def _publish(self, force: bool = False) -> None:
        """Publish each node's combined cap; an empty series releases a node no event holds."""
        store = SignalStore.of(self.hub)
        caps = node_caps(self.events.values())
        for node in sorted(set(caps) | set(self._published)):
            series = caps.get(node) or TimeSeries(unit=UNIT, source="demand_response")
            if force or self._published.get(node) != series:
                store.publish(signal_name(node), series)
            if series.slots:
                self._published[node] = series
            else:
                self._published.pop(node, None)

    def _refresh(self) -> None:
        """Entities and compliance points now, and a timer at the next edge of any cap."""
        now = self.hub.now()
        for event_id, tally in self._tallies.items():
            event = self.events[event_id]
            tally.point(now, self.meter(event.node).kw(), event.cap_at(now))
        for entity in self.entities:
            entity.write_state()
        if self._edge is not None:
            self._edge.cancel()
        edges = [
            t
            for series in self._published.values()
            for slot in series.slots
            for t in (slot.start, slot.end)
            if t > now
        ]
        self._edge = self.hub.clock.call_at(min(edges), self._refresh) if edges else None

    # --- compliance -----------------------------------------------------------------------
    def _watched(self) -> set[str]:
        return {e for event_id in self._tallies for e in self._meter_of(event_id).entities}

    def _meter_of(self, event_id: str) -> LoadMeter:
        return self.meter(self.events[event_id].node)

    def _open_tally(self, event: DrEvent) -> None:
        if event.event_id in self._tallies:
            return
        tally = self._tallies[event.event_id] = Tally(self.settings.tolerance_kw)
        now = self.hub.now()
        tally.point(now, self.meter(event.node).kw(), event.cap_at(now))

    def _close_tally(self, event_id: str) -> dict[str, Any] | None:
        tally = self._tallies.pop(event_id, None)
        if tally is None:
            return None
        now = self.hub.now()
        event = self.events[event_id]
        tally.point(now, self.meter(event.node).kw(), event.cap_at(now))
        return tally.result()

    def _on_state(self, event: Event) -> None:
        entity_id = event.data["entity_id"]
        now = self.hub.now()
        for event_id, tally in self._tallies.items():
            meter = self._meter_of(event_id)
            if entity_id in meter.entities:
                tally.point(now, meter.kw(), self.events[event_id].cap_at(now))

    def strictest_now(self) -> Mapping[str, float]:
        return strictest(self.events.values(), self.hub.now())

    def next_start(self) -> datetime | None:
        upcoming = self.upcoming()
        return upcoming[0].start if upcoming else None
