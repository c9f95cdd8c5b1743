"""The functions, filters and tests of the automation template environment (`templates.py`).

Each read of a state, a signal or the clock is recorded in the current render's scope, so a
TemplateTracker re-renders only when something the template actually read has changed.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from hub.charging.signals import DEFAULT_STEP, Slot, TimeSeries
from hub.states import STATE_UNAVAILABLE, State, split_entity_id, valid_entity_id

if TYPE_CHECKING:
    from hub.core import Hub

MAX_STEPS = 100_000  # loop iterations + calls in one render: a runaway template fails, fast
DEFAULT_TARIFF = "tariff.grid_import"
_MISSING: Any = object()


class LimitExceeded(RuntimeError):
    """A render went over one of the sandbox's limits (steps, sizes)."""


# --- what a render read --------------------------------------------------------------------------
@dataclass(slots=True)
class RenderScope:
    entities: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    signals: set[str] = field(default_factory=set)
    all_states: bool = False
    has_time: bool = False
    steps: int = 0


_SCOPE: ContextVar[RenderScope | None] = ContextVar("evhub_template_scope", default=None)


def step(count: int = 1) -> None:
    scope = _SCOPE.get()
    if scope is not None:
        scope.steps += count
        if scope.steps > MAX_STEPS:
            raise LimitExceeded(f"template ran more than {MAX_STEPS} loop iterations and calls")


def track_time() -> None:
    if (scope := _SCOPE.get()) is not None:
        scope.has_time = True


def track_signal(name: str) -> None:
    if (scope := _SCOPE.get()) is not None:
        scope.signals.add(name)


def pass_hub(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a template function that takes the hub (None when rendered without one) first;
    the attribute is the one the tariffs plugin already sets, like jinja2's pass_context."""
    function.pass_hub = True  # type: ignore[attr-defined]
    return function


def _need(hub: Hub | None, what: str) -> Hub:
    if hub is None:
        raise RuntimeError(f"{what} needs a running hub")
    return hub


def read_state(hub: Hub | None, entity_id: str) -> State | None:
    """The entity's State, recording the read: plugin functions use this to be tracked too."""
    hub = _need(hub, "reading states")
    entity_id = str(entity_id).lower()
    if (scope := _SCOPE.get()) is not None:
        scope.entities.add(entity_id)
    return hub.states.get(entity_id)


def state_string(value: Any) -> str:  # None is a value not known yet
    return "unknown" if value is None else str(value)


# --- states as objects: `states.charger.bay_01.state` ---------------------------------------------
class TemplateState:
    """A read-only view of one State for templates; `.state` is text, `.native` the value."""

    __slots__ = ("_state",)

    def __init__(self, state: State) -> None:
        self._state = state

    entity_id = property(lambda self: self._state.entity_id)
    domain = property(lambda self: self._state.domain)
    object_id = property(lambda self: split_entity_id(self._state.entity_id)[1])
    state = property(lambda self: state_string(self._state.state))
    native = property(lambda self: self._state.state)
    attributes = property(lambda self: self._state.attributes)
    unit = property(lambda self: self._state.unit)
    last_changed = property(lambda self: self._state.last_changed)
    last_updated = property(lambda self: self._state.last_updated)
    name = property(lambda self: self._state.attributes.get("friendly_name") or self.object_id)

    def __repr__(self) -> str:
        return f"<state {self._state.entity_id}={self.state}>"


_PROBES = frozenset({"unsafe_callable", "alters_data", "jinja_pass_arg"})


class AllStates:
    """`states('charger.x')` is the state text, `states.charger.x` the state object (or None).
    Iterating `states.charger` reads the domain, iterating `states` everything: a tracker then
    re-renders on every change there."""

    __slots__ = ("_domain", "_hub")

    def __init__(self, hub: Hub | None, domain: str | None = None) -> None:
        self._hub, self._domain = hub, domain

    def __call__(self, entity_id: str) -> str:
        return states_text(self._hub, entity_id)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in _PROBES:  # jinja asks these of anything it calls
            raise AttributeError(name)
        if self._domain is None:
            return AllStates(self._hub, name)
        state = read_state(self._hub, f"{self._domain}.{name}")
        return None if state is None else TemplateState(state)

    __getitem__ = __getattr__

    def _states(self) -> list[TemplateState]:
        hub = _need(self._hub, "reading states")
        if (scope := _SCOPE.get()) is not None:
            if self._domain is None:
                scope.all_states = True
            else:
                scope.domains.add(self._domain)
        states = sorted(hub.states.all(self._domain), key=lambda s: s.entity_id)
        return [TemplateState(s) for s in states]

    def __iter__(self) -> Iterator[TemplateState]:
        return iter(self._states())

    def __len__(self) -> int:
        return len(self._states())

    def __repr__(self) -> str:
        return f"<states of {self._domain or 'everything'}>"


# --- state functions ------------------------------------------------------------------------------
def _entity_id(value: Any) -> str:
    return value.entity_id if isinstance(value, TemplateState) else str(value)


@pass_hub
def states_text(hub: Hub | None, entity_id: Any) -> str:
    state = read_state(hub, _entity_id(entity_id))
    return "unknown" if state is None else state_string(state.state)


@pass_hub
def state_attr(hub: Hub | None, entity_id: Any, name: str) -> Any:
    state = read_state(hub, _entity_id(entity_id))
    return None if state is None else state.attributes.get(name)


def _matches(actual: Any, wanted: Any) -> bool:
    options = wanted if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
    return any(actual == w or state_string(actual) == state_string(w) for w in options)


@pass_hub
def is_state(hub: Hub | None, entity_id: Any, value: Any) -> bool:
    state = read_state(hub, _entity_id(entity_id))
    return state is not None and _matches(state.state, value)


@pass_hub
def is_state_attr(hub: Hub | None, entity_id: Any, name: str, value: Any) -> bool:
    state = read_state(hub, _entity_id(entity_id))
    return state is not None and name in state.attributes and state.attributes[name] == value


@pass_hub
def has_value(hub: Hub | None, entity_id: Any) -> bool:
    state = read_state(hub, _entity_id(entity_id))
    return state is not None and state.state not in (None, STATE_UNAVAILABLE, "unknown")


# --- time: always the hub's clock -----------------------------------------------------------------
@pass_hub
def now(hub: Hub | None) -> datetime:
    track_time()
    return _need(hub, "now()").now_local()


@pass_hub
def utcnow(hub: Hub | None) -> datetime:
    track_time()
    return _need(hub, "utcnow()").now().astimezone(UTC)


def _zone(hub: Hub | None) -> Any:
    return UTC if hub is None else hub.time_zone


def to_datetime(hub: Hub | None, value: Any) -> datetime:
    """A datetime, an ISO 8601 text or a UNIX timestamp as an aware datetime (naive: hub zone)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, an ISO 8601 time or a timestamp, got {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=_zone(hub))


def _forgiving(what: str, convert: Callable[[], Any], value: Any, default: Any) -> Any:
    """convert(); on bad input the default, or without one an error naming the input."""
    try:
        return convert()
    except (TypeError, ValueError, OverflowError, OSError):
        if default is _MISSING:
            raise ValueError(f"{what} got an invalid input {value!r} and no default") from None
        return default


@pass_hub
def as_datetime(hub: Hub | None, value: Any, default: Any = _MISSING) -> Any:
    return _forgiving("as_datetime", lambda: to_datetime(hub, value), value, default)


@pass_hub
def as_timestamp(hub: Hub | None, value: Any, default: Any = _MISSING) -> Any:
    return _forgiving("as_timestamp", lambda: to_datetime(hub, value).timestamp(), value, default)


@pass_hub
def as_local(hub: Hub | None, value: Any) -> datetime:
    return to_datetime(hub, value).astimezone(_zone(hub))


@pass_hub
def today_at(hub: Hub | None, value: str = "00:00") -> datetime:
    track_time()
    local = _need(hub, "today_at()").now_local()
    return datetime.combine(local.date(), time.fromisoformat(str(value)), tzinfo=hub.time_zone)


_UNITS = (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600),
          ("minute", 60), ("second", 1))  # fmt: skip


@pass_hub
def relative_time(hub: Hub | None, value: Any) -> Any:
    """How long ago, in the largest whole unit ("2 hours"); a future time comes back unchanged."""
    track_time()
    when = to_datetime(hub, value)
    seconds = (_need(hub, "relative_time()").now() - when).total_seconds()
    if seconds < 0:
        return value
    unit, size = next((u for u in _UNITS if seconds >= u[1]), _UNITS[-1])
    count = int(seconds // size)
    return f"{count} {unit}{'' if count == 1 else 's'}"


# --- numbers, forgiving only when asked to be -----------------------------------------------------
def to_float(value: Any, default: Any = _MISSING) -> Any:
    return _forgiving("float", lambda: builtins.float(value), value, default)


def _int(value: Any, base: int) -> int:
    if not isinstance(value, str):
        return builtins.int(value)
    try:
        return builtins.int(value.strip(), base)
    except ValueError:
        return builtins.int(builtins.float(value))  # "5.7" -> 5, as jinja's int filter does


def to_int(value: Any, default: Any = _MISSING, base: int = 10) -> Any:
    return _forgiving("int", lambda: _int(value, base), value, default)


def _round(value: Any, precision: int, method: str) -> float | int:
    number, scale = builtins.float(value), 10**precision
    result = (
        builtins.round(number, precision)
        if method == "common"
        else getattr(math, method)(number * scale) / scale
    )
    return builtins.int(result) if precision == 0 else result


def rounded(value: Any, precision: int = 0, method: str = "common", default: Any = _MISSING) -> Any:
    if method not in ("common", "ceil", "floor"):
        raise ValueError(f"round method {method!r}: expected common, ceil or floor")
    return _forgiving("round", lambda: _round(value, precision, method), value, default)


def _values(args: tuple[Any, ...]) -> Iterable[Any]:
    return args[0] if len(args) == 1 and isinstance(args[0], Iterable) else args


def iif(value: Any, if_true: Any = True, if_false: Any = False, if_none: Any = _MISSING) -> Any:
    if value is None and if_none is not _MISSING:
        return if_none
    return if_true if value else if_false


# --- prices: the tariff entity (or its signal) ----------------------------------------------------
def price_series(hub: Hub | None, entity_id: str = DEFAULT_TARIFF) -> TimeSeries | None:
    """Prices from the tariff entity: its whole signal when published, else its upcoming slots
    (a signal name such as `prices.grid_import` works as well as an entity id)."""
    hub = _need(hub, "prices")
    store = hub.data.get("signals")
    state = read_state(hub, entity_id)
    if state is not None:
        signal = state.attributes.get("signal")
        if store is not None and isinstance(signal, str) and signal in store:
            track_signal(signal)
            return store.get(signal)
        slots = state.attributes.get("slots") or ()  # [{start, end, price}], ISO times
        return TimeSeries(
            Slot(datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"]), s["price"])
            for s in slots
        )
    track_signal(entity_id)  # a signal published later re-renders the template
    return store.get(entity_id) if store is not None else None


@pass_hub
def price_at(hub: Hub | None, when: Any = None, entity_id: Any = None) -> float | None:
    """The price in the slot holding `when` (default now); `price_at('tariff.x', when)`, the
    order docs/tariffs.md gives, works too (a time is never shaped like an entity id)."""
    if isinstance(when, str) and valid_entity_id(when):
        when, entity_id = entity_id, when
    series = price_series(hub, entity_id or DEFAULT_TARIFF)
    if when is None:
        track_time()
        when = _need(hub, "price_at()").now()
    return None if series is None else series.value_at(to_datetime(hub, when))


def _cheapest_run(slots: list[Slot], need: timedelta) -> list[Slot]:
    """The consecutive slots (no gap) covering `need` at the lowest cost; [] when none do."""
    best: tuple[float, list[Slot]] | None = None
    for i in range(len(slots)):
        run, got, cost = [], timedelta(0), 0.0
        for slot in slots[i:]:
            if run and slot.start != run[-1].end:
                break
            used = min(slot.duration, need - got)
            run.append(slot)
            got += used
            cost += slot.value * used.total_seconds()
            if got >= need:
                if best is None or cost < best[0]:
                    best = (cost, run)
                break
    return [] if best is None else best[1]


@pass_hub
def cheapest_slots(
    hub: Hub | None,
    hours: float,
    start: Any = None,
    end: Any = None,
    entity_id: str = DEFAULT_TARIFF,
    contiguous: bool = False,
) -> list[datetime]:
    """Starts of the cheapest 15-minute slots covering `hours` in [start (now), end (last price)),
    in time order; the slot in force at `start` counts from `start`. Fewer when fewer prices are
    known; `contiguous=True` wants one unbroken run and gives [] when no run is long enough."""
    series = price_series(hub, entity_id)
    if series is None or series.end is None:
        return []
    hub = _need(hub, "cheapest_slots()")
    if start is None:
        track_time()
    t0 = hub.now() if start is None else to_datetime(hub, start)
    t1 = series.end if end is None else to_datetime(hub, end)
    # Tariff periods can be hours long (time-of-use): choose among the planner's 15-minute slots.
    slots = list(TimeSeries(series.slots_between(t0, t1)).resample(DEFAULT_STEP))
    need = timedelta(hours=builtins.float(hours))
    if need <= timedelta(0) or not slots:
        return []
    if contiguous:
        chosen = _cheapest_run(slots, need)
    else:
        chosen, got = [], timedelta(0)
        for slot in sorted(slots, key=lambda s: (s.value, s.start)):
            if got >= need:
                break
            chosen.append(slot)
            got += slot.duration
    return sorted(s.start.astimezone(hub.time_zone) for s in chosen)


_G, _GF, _GFT = ("global",), ("global", "filter"), ("global", "filter", "test")
# name, function, kinds; `states` itself (callable, and `states.charger.x`) is added by templates.py
BUILTINS: tuple[tuple[str, Callable[..., Any], tuple[str, ...]], ...] = (
    ("states", states_text, ("filter",)), ("state_attr", state_attr, _GF),
    ("is_state", is_state, _GFT), ("is_state_attr", is_state_attr, _GFT),
    ("has_value", has_value, _GFT), ("now", now, _G), ("utcnow", utcnow, _G),
    ("as_datetime", as_datetime, _GF), ("as_timestamp", as_timestamp, _GF),
    ("as_local", as_local, _GF), ("today_at", today_at, _GF),
    ("relative_time", relative_time, _GF), ("timedelta", timedelta, _G),
    ("float", to_float, _GF), ("int", to_int, _GF), ("round", rounded, _GF),
    ("min", lambda *a: builtins.min(_values(a)), _G),
    ("max", lambda *a: builtins.max(_values(a)), _G), ("abs", builtins.abs, _G), ("iif", iif, _GF),
    ("price_at", price_at, _GF), ("cheapest_slots", cheapest_slots, _G),
)  # fmt: skip
