"""From an OpenADR 2.0b event (as openleadr parses it) to the kW caps it puts on a site node: SIMPLE
levels through a configurable table, LOAD_DISPATCH / LOAD_CONTROL signals in kW or relative to
the node's limit, with the lead-in (ramp-up, and time for chargers to obey) before the start.

Pure functions: they raise `DrInputError` with a message that names what was wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hub.charging.signals import Slot, TimeSeries
from plugins.openadr.model import DrEvent, Status

SOURCE = "openadr"
OPEN_ENDED = timedelta(hours=24)  # a duration of 0 means "until further notice"
# OpenADR scale codes (SI prefixes) -> factor to kW.
_SCALE = {"p": 1e-15, "n": 1e-12, "micro": 1e-9, "m": 1e-6, "c": 1e-5, "d": 1e-4,
          "none": 1e-3, "k": 1.0, "M": 1e3, "G": 1e6, "T": 1e9}  # fmt: skip
_PRICE_SIGNALS = {"ELECTRICITY_PRICE", "ENERGY_PRICE", "DEMAND_CHARGE", "BID_PRICE", "BID_LOAD",
                  "BID_ENERGY", "CHARGE_STATE"}  # fmt: skip


class DrInputError(ValueError):
    """An event (or a grid signal) the hub cannot turn into a cap."""


@dataclass(frozen=True, slots=True)
class CapRule:
    """What a level means: a share of the node's limit, a fixed kW cap, or no cap at all."""

    percent: float | None = None
    kw: float | None = None

    def cap(self, limit_kw: float | None, what: str) -> float | None:
        if self.kw is not None:
            return self.kw
        if self.percent is None:
            return None
        if limit_kw is None:
            raise DrInputError(f"{what} is {self.percent:g} % of the node's limit: unknown")
        return limit_kw * self.percent / 100

    def __str__(self) -> str:
        if self.kw is not None:
            return f"{self.kw:g} kW"
        return "no cap" if self.percent is None else f"{self.percent:g} %"


_RULE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|kw)?\s*$", re.IGNORECASE)


def parse_rule(value: Any) -> CapRule:
    """`70%` (of the node's limit), `50` or `50 kW` (kW), `none` (no cap)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
        return CapRule()
    if isinstance(value, bool):
        raise ValueError(f"expected a cap like '70%' or '50 kW', got {value!r}")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"a cap must be 0 or more kW, got {value!r}")
        return CapRule(kw=float(value))
    match = _RULE.match(str(value))
    if not match:
        raise ValueError(f"expected a cap like '70%', '50 kW' or 'none', got {value!r}")
    number, unit = float(match.group(1)), (match.group(2) or "kw").lower()
    if unit == "%":
        if number > 100:
            raise ValueError(f"a share of the limit is at most 100 %, got {value!r}")
        return CapRule(percent=number)
    return CapRule(kw=number)


DEFAULT_LEVELS = {
    0: CapRule(),
    1: CapRule(percent=70),
    2: CapRule(percent=40),
    3: CapRule(percent=0),
}


@dataclass(frozen=True, slots=True)
class MappingConf:
    """The configuration the mapping needs; `limit_kw(node)` answers a node's kW limit."""

    node: str = "site"
    levels: Mapping[int, CapRule] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    resources: Mapping[str, str] = field(default_factory=dict)
    lead: timedelta = timedelta(seconds=10)
    ramp_steps: int = 4
    limit_kw: Callable[[str], float | None] = lambda node: None

    def level_rule(self, level: float) -> CapRule:
        """The rule of a level; above the table, the highest level's (the stricter side)."""
        rounded = round(level)
        if rounded in self.levels:
            return self.levels[rounded]
        below = [lv for lv in self.levels if lv <= rounded]
        if not below:
            return CapRule()
        return self.levels[max(below)]


def _get(obj: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj or obj[key] is None:
        raise DrInputError(f"{what}: missing {key}")
    return obj[key]


def _aware(value: Any, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise DrInputError(f"{what}: expected a timezone-aware time, got {value!r}")
    return value


def _duration(value: Any, what: str) -> timedelta:
    if value is None:
        return timedelta(0)
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise DrInputError(f"{what}: expected a duration, got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DrInputError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise DrInputError(f"{what}: expected a finite number, got {value!r}")
    return number


def target_node(event: Mapping[str, Any], conf: MappingConf) -> str:
    """The node a `resource_id` target of the event names (`resources:` table), else the default."""
    targets = event.get("targets") or []
    if isinstance(targets, Mapping):
        targets = [targets]
    for target in targets if isinstance(targets, list) else []:
        resource = target.get("resource_id") if isinstance(target, Mapping) else None
        if isinstance(resource, str) and resource in conf.resources:
            return conf.resources[resource]
    return conf.node


def from_openadr(event: Mapping[str, Any], conf: MappingConf, now: datetime) -> DrEvent:
    """Build the hub's event from openleadr's dict; raises DrInputError on what it cannot use."""
    descriptor = _get(event, "event_descriptor", "event")
    event_id = str(_get(descriptor, "event_id", "event_descriptor"))
    what = f"event {event_id}"
    period = _get(event, "active_period", what)
    start = _aware(_get(period, "dtstart", f"{what} active_period"), f"{what} dtstart")
    duration = _duration(period.get("duration"), f"{what} duration")
    end = start + (duration if duration > timedelta(0) else OPEN_ENDED)
    ramp = _duration(period.get("ramp_up_period"), f"{what} ramp_up_period")
    node = target_node(event, conf)
    signals = event.get("event_signals") or []
    if isinstance(signals, Mapping):
        signals = signals.get("event_signals") or [signals]
    if not isinstance(signals, list) or not signals:
        raise DrInputError(f"{what} has no signals")
    limit = conf.limit_kw(node)
    combined: TimeSeries | None = None
    names, types, levels, ignored = [], [], [], []
    for i, signal in enumerate(signals):
        name = str(_get(signal, "signal_name", f"{what} signal {i}"))
        kind = str(_get(signal, "signal_type", f"{what} signal {name}"))
        if name in _PRICE_SIGNALS:
            ignored.append(name)  # prices are for the tariffs side, not a limit
            continue
        slots, level = _signal_slots(signal, name, kind, start, end, limit, conf, what)
        names.append(name)
        types.append(kind)
        if level is not None:
            levels.append(level)
        series = TimeSeries(slots, unit="kW", source=name)
        combined = series if combined is None else combined.combine_min(series)
    if combined is None:
        raise DrInputError(f"{what} carries no load signal (only {', '.join(ignored)})")
    lead_in = _lead_in(combined, start, ramp, conf.lead, conf.ramp_steps, limit)
    status = str(descriptor.get("event_status") or "")
    return DrEvent(
        event_id=event_id,
        source=SOURCE,
        node=node,
        signal_name="+".join(names),
        signal_type="+".join(types),
        start=start,
        end=end,
        slots=(*lead_in, *combined.slots),
        level=max(levels) if levels else None,
        modification=int(_number(descriptor.get("modification_number", 0), what)),
        status=Status.CANCELLED if status == "cancelled" else Status.PENDING,
        received_at=now,
        market_context=descriptor.get("market_context"),
        priority=int(_number(descriptor.get("priority") or 0, what)),
        test_event=bool(descriptor.get("test_event") in (True, "true")),
        detail={"ignored_signals": ignored} if ignored else {},
    )


def _intervals(signal: Mapping[str, Any], start: datetime, end: datetime, what: str) -> list[Any]:
    """(start, end, payload) per interval; openleadr fills dtstart, a bare one follows the last."""
    intervals = signal.get("intervals")
    if not isinstance(intervals, list) or not intervals:
        raise DrInputError(f"{what} has no intervals")
    out, cursor = [], start
    for j, interval in enumerate(intervals):
        where = f"{what} interval {j}"
        a = interval.get("dtstart") if isinstance(interval, Mapping) else None
        a = cursor if a is None else _aware(a, where)
        length = _duration(_get(interval, "duration", where), where)
        b = a + length if length > timedelta(0) else end
        payload = _get(interval, "signal_payload", where)
        a, b = max(a, start), min(b, end)
        if b > a:
            out.append((a, b, payload))
        cursor = b
    return out


def _signal_slots(
    signal: Mapping[str, Any],
    name: str,
    kind: str,
    start: datetime,
    end: datetime,
    limit: float | None,
    conf: MappingConf,
    what: str,
) -> tuple[list[Slot], float | None]:
    where = f"{what} signal {name}/{kind}"
    factor = _scale(signal.get("measurement"), where)
    slots, top = [], None
    for a, b, payload in _intervals(signal, start, end, where):
        value = _number(payload, where)
        cap: float | None
        if name.upper() == "SIMPLE" or kind == "x-loadControlLevelOffset":
            top = value if top is None else max(top, value)
            cap = conf.level_rule(value).cap(limit, f"{where} level {value:g}")
        elif name in ("LOAD_DISPATCH", "LOAD_CONTROL"):
            cap = _kw_cap(kind, value, factor, limit, where)
        else:
            raise DrInputError(f"{where}: unsupported signal")
        if cap is not None:
            slots.append(Slot(a, b, max(0.0, cap)))
    return slots, top


def _kw_cap(kind: str, value: float, factor: float, limit: float | None, where: str) -> float:
    if kind in ("setpoint", "x-loadControlSetpoint"):
        return value * factor
    if limit is None:
        raise DrInputError(f"{where} is relative to the node's limit, which is unknown")
    if kind == "delta":
        return limit + value * factor  # a negative delta sheds below the node's limit
    if kind == "x-loadControlCapacity":
        if not 0 <= value <= 1:
            raise DrInputError(f"{where}: capacity must be a fraction 0..1, got {value:g}")
        return limit * value
    if kind == "x-loadControlPercentOffset":
        return limit * (1 + value / 100)
    raise DrInputError(f"{where}: unsupported signal type")


def _scale(measurement: Any, where: str) -> float:
    """Factor from the signal's itemBase (powerReal W / kW / MW) to kW; kW when it has none."""
    if not isinstance(measurement, Mapping):
        return 1.0
    scale = str(measurement.get("scale") or "none")
    unit = str(measurement.get("unit") or "W")
    if scale not in _SCALE:
        raise DrInputError(f"{where}: unknown scale {scale!r}")
    if unit.upper() not in ("W", "KW"):
        raise DrInputError(f"{where}: a cap needs a power unit, got {unit!r}")
    factor = _SCALE[scale]
    return factor * 1000 if unit.upper() == "KW" else factor


def _lead_in(
    series: TimeSeries,
    start: datetime,
    ramp: timedelta,
    lead: timedelta,
    steps: int,
    limit: float | None,
) -> list[Slot]:
    """Slots before `start`: down from the node's limit over the ramp-up period in `steps`, and
    the first cap for `lead` before the start, so the load is under it when the event begins."""
    first = series.value_at(start)
    if first is None:
        return []
    out: list[Slot] = []
    if ramp > lead:
        ramp_start, ramp_end = start - ramp, start - lead
        if limit is None or limit <= first or steps < 2:
            out.append(Slot(ramp_start, ramp_end, first))
        else:
            step = (ramp_end - ramp_start) / steps
            for k in range(steps):
                value = limit + (first - limit) * (k + 1) / steps
                out.append(Slot(ramp_start + k * step, ramp_start + (k + 1) * step, value))
    if lead > timedelta(0):
        out.append(Slot(start - lead, start, first))
    return out


def lead_in(series: Sequence[Slot], start: datetime, lead: timedelta) -> list[Slot]:
    """The lead-in of a plain (grid signal) cap: its first value for `lead` before `start`."""
    return _lead_in(TimeSeries(series, unit="kW"), start, timedelta(0), lead, 0, None)
