"""Traces of automation runs: the trigger, each condition's result, each action step with its
result, error and timing on the hub clock, the variables, and the events the run caused.

Kept in memory (the last `stored_traces` runs per automation, 5 by default), not persisted: a
restart starts with none. `get_traces(hub, automation)` gives them as JSON-able dicts for the API.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import math
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from hub.bus import Context, Event
from hub.states import State

if TYPE_CHECKING:
    from hub.clock import Clock
    from hub.core import Hub

MAX_STEPS = 500  # a run that loops thousands of times keeps its first steps and says it cut
MAX_EVENTS = 100
_DEPTH = 12

_CURRENT: contextvars.ContextVar[RunTrace | None] = contextvars.ContextVar(
    "automation_trace", default=None
)


def current_trace() -> RunTrace | None:
    """The trace of the run this code is part of (a context variable: each run is a task)."""
    return _CURRENT.get()


@contextlib.contextmanager
def tracing(trace: RunTrace | None) -> Iterator[None]:
    token = _CURRENT.set(trace)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def jsonable(value: Any, depth: int = 0) -> Any:
    """States, events, times and templates as plain JSON values, for the API and the logs."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth > _DEPTH:
        return "..."
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return jsonable(value.value, depth + 1)
    if isinstance(value, Event | Context | State):
        return jsonable(value.as_dict(), depth + 1)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | deque):
        return [jsonable(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), depth + 1)
    if hasattr(value, "template") and hasattr(value, "render"):
        return str(getattr(value, "template", value))
    return repr(value)[:200]


class RunTrace:
    """One run: what fired it, what was checked, what was done, and when (hub clock)."""

    def __init__(
        self,
        clock: Clock,
        *,
        automation_id: str,
        entity_id: str,
        run_id: str,
        context: Context,
        trigger: Mapping[str, Any],
    ) -> None:
        self.clock = clock
        self.automation_id, self.entity_id, self.run_id = automation_id, entity_id, run_id
        self.context = context
        self.trigger = jsonable(trigger)
        self.start = clock.now()
        self.finish: datetime | None = None
        self.state = "running"
        self.execution: str | None = None
        self.error: str | None = None
        self.stop_reason: str | None = None
        self.variables: dict[str, Any] = {}
        self.conditions: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.truncated = False
        self.contexts: set[str] = {context.id}  # the run's own and every child it handed out

    def set_variables(self, variables: Mapping[str, Any]) -> None:
        self.variables = jsonable({k: v for k, v in variables.items() if k != "this"})

    def record_condition(
        self, path: str, kind: str, result: bool, *, error: str | None = None,
        alias: str | None = None,
    ) -> None:  # fmt: skip
        if len(self.conditions) >= MAX_STEPS:
            self.truncated = True
            return
        entry = {"path": path, "condition": kind, "result": result,
                 "timestamp": self.clock.now().isoformat()}  # fmt: skip
        if error is not None:
            entry["error"] = error
        if alias is not None:
            entry["alias"] = alias
        self.conditions.append(entry)

    def step_start(self, path: str, kind: str, alias: str | None) -> dict[str, Any] | None:
        if len(self.steps) >= MAX_STEPS:
            self.truncated = True
            return None
        step: dict[str, Any] = {"path": path, "action": kind, "start": self.clock.now().isoformat(),
                                "finish": None, "result": None, "error": None}  # fmt: skip
        if alias is not None:
            step["alias"] = alias
        self.steps.append(step)
        return step

    def step_end(
        self, step: dict[str, Any] | None, *, result: Any = None, error: str | None = None,
        changed_variables: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        if step is None:
            return
        step["finish"] = self.clock.now().isoformat()
        step["result"] = jsonable(result)
        step["error"] = error
        if changed_variables:
            step["changed_variables"] = jsonable(changed_variables)

    def child_context(self) -> Context:
        child = self.context.child()
        self.contexts.add(child.id)
        return child

    def record_event(self, event: Event) -> None:
        """An event caused by this run (its context, or a child of it)."""
        if len(self.events) >= MAX_EVENTS:
            self.truncated = True
            return
        entry: dict[str, Any] = {
            "event_type": event.event_type,
            "time_fired": event.time_fired.isoformat(),
            "context": event.context.as_dict(),
        }
        data = event.data
        for key in ("entity_id", "domain", "service"):
            if key in data:
                entry[key] = jsonable(data[key])
        if "new_state" in data and data["new_state"] is not None:
            entry["state"] = jsonable(data["new_state"].state)
        self.events.append(entry)
        self.contexts.add(event.context.id)

    def end(self, execution: str, *, error: str | None = None, stop_reason: str | None = None):
        self.finish = self.clock.now()
        self.state = "stopped"
        self.execution = execution
        self.error = error
        self.stop_reason = stop_reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "automation_id": self.automation_id,
            "entity_id": self.entity_id,
            "state": self.state,
            "script_execution": self.execution,
            "start": self.start.isoformat(),
            "finish": self.finish.isoformat() if self.finish else None,
            "error": self.error,
            "stop_reason": self.stop_reason,
            "trigger": self.trigger,
            "context": self.context.as_dict(),
            "variables": self.variables,
            "conditions": list(self.conditions),
            "steps": list(self.steps),
            "events": list(self.events),
            "truncated": self.truncated,
        }


class TraceStore:
    """The last runs per automation, and which run a context belongs to."""

    def __init__(self) -> None:
        self._runs: dict[str, deque[RunTrace]] = {}
        self._by_context: dict[str, RunTrace] = {}

    def add(self, key: str, trace: RunTrace, keep: int) -> None:
        runs = self._runs.get(key)
        if runs is None or runs.maxlen != keep:
            runs = self._runs[key] = deque(runs or (), maxlen=max(keep, 0))
        if keep <= 0:
            return  # not kept: nothing may point at it (stored_traces: 0)
        if len(runs) == runs.maxlen:
            self._forget(runs[0])
        runs.append(trace)
        self._by_context[trace.context.id] = trace

    def _forget(self, trace: RunTrace) -> None:
        for context_id in trace.contexts:
            if self._by_context.get(context_id) is trace:
                del self._by_context[context_id]

    def link(self, context_id: str, trace: RunTrace) -> None:
        if trace.context.id in self._by_context:  # only runs that are kept
            trace.contexts.add(context_id)
            self._by_context[context_id] = trace

    def owner(self, context: Context) -> RunTrace | None:
        """The run this context came from: its own, a child it made, or a child of one of those."""
        found = self._by_context.get(context.id)
        if found is None and context.parent_id is not None:
            found = self._by_context.get(context.parent_id)
        return found

    def get(self, key: str) -> list[dict[str, Any]]:
        return [t.as_dict() for t in reversed(self._runs.get(key, ()))]

    def keys(self) -> list[str]:
        return list(self._runs)


def _store(hub: Hub) -> TraceStore | None:
    component = hub.data.get("automation")
    return getattr(component, "traces", None)


def get_traces(hub: Hub, automation: str) -> list[dict[str, Any]]:
    """The stored runs of one automation, newest first; `automation` is its id or entity id."""
    store = _store(hub)
    if store is None:
        return []
    component = hub.data["automation"]
    return store.get(component.trace_key(automation))


def get_trace_for_context(hub: Hub, context_id: str, parent_id: str | None = None) -> dict | None:
    """The run that caused something with this context (a service call, a state it set)."""
    store = _store(hub)
    found = store.owner(Context(id=context_id, parent_id=parent_id)) if store else None
    return found.as_dict() if found is not None else None
