"""A demand-response event as the hub keeps it, whatever brought it (an OpenADR VTN or a grid
signal feed), and the caps the opted-in events add up to per node of the site tree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.charging.signals import Slot, TimeSeries

UNIT = "kW"


class Status(enum.StrEnum):
    PENDING = "pending"  # received, not started
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Opt(enum.StrEnum):
    IN = "in"
    OUT = "out"

    @property
    def openadr(self) -> str:
        return "optIn" if self is Opt.IN else "optOut"


@dataclass(slots=True)
class DrEvent:
    """One event: when it holds, the kW cap it puts on a node over time, and what we said to it.

    `slots` are kW caps; they may begin before `start` (ramp-up and the lead that gives chargers
    time to obey), never after `end`.
    """

    event_id: str
    source: str  # "openadr" or "grid_signal.<name>"
    node: str  # a site node id; "site" is the root
    signal_name: str
    signal_type: str
    start: datetime
    end: datetime
    slots: tuple[Slot, ...]
    level: float | None = None  # the highest SIMPLE level of the event, if it has one
    modification: int = 0
    status: Status = Status.PENDING
    opt: Opt = Opt.IN
    opt_by: str = "default"  # "default" (configuration) or "service" (an automation or a user)
    received_at: datetime | None = None
    market_context: str | None = None
    priority: int = 0
    test_event: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def cap_kw(self) -> float | None:
        """The strictest cap the event sets between its start and its end."""
        values = [s.value for s in self.slots if s.end > self.start and s.start < self.end]
        return min(values) if values else None

    @property
    def in_force(self) -> bool:
        """Opted in and neither cancelled nor over: its cap belongs in the published series."""
        return self.opt is Opt.IN and self.status in (Status.PENDING, Status.ACTIVE)

    def series(self) -> TimeSeries:
        return TimeSeries(self.slots, unit=UNIT, source=f"{self.source}:{self.event_id}")

    def cap_at(self, t: datetime) -> float | None:
        return self.series().value_at(t)

    def as_dict(self) -> dict[str, Any]:
        """What the report, the entities and the recorder show of it (times as ISO strings)."""
        return {
            "event_id": self.event_id,
            "source": self.source,
            "node": self.node,
            "signal_name": self.signal_name,
            "signal_type": self.signal_type,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "cap_kw": self.cap_kw,
            "level": self.level,
            "modification": self.modification,
            "status": str(self.status),
            "opt": str(self.opt),
            "opt_by": self.opt_by,
            "market_context": self.market_context,
            "test_event": self.test_event,
            "slots": slot_rows(self.slots),
        }


def slot_rows(slots: Iterable[Slot]) -> list[list[Any]]:
    return [[s.start.isoformat(), s.end.isoformat(), s.value] for s in slots]


def slots_from_rows(rows: Iterable[Any]) -> tuple[Slot, ...]:
    return tuple(
        Slot(datetime.fromisoformat(a), datetime.fromisoformat(b), float(v)) for a, b, v in rows
    )


def signal_name(node: str) -> str:
    return f"caps.{node}"


def node_caps(events: Iterable[DrEvent]) -> dict[str, TimeSeries]:
    """Per node, the minimum of every in-force event's cap at each instant."""
    out: dict[str, TimeSeries] = {}
    for event in events:
        if not event.in_force or not event.slots:
            continue
        series = event.series()
        known = out.get(event.node)
        out[event.node] = series if known is None else known.combine_min(series)
    return {n: TimeSeries(s.slots, unit=UNIT, source="demand_response") for n, s in out.items()}


def strictest(events: Iterable[DrEvent], t: datetime) -> Mapping[str, float]:
    """node -> the cap in force at `t` over every in-force event."""
    out: dict[str, float] = {}
    for event in events:
        if not event.in_force:
            continue
        value = event.cap_at(t)
        if value is not None and (event.node not in out or value < out[event.node]):
            out[event.node] = value
    return out
