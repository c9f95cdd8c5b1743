"""The event bus: everything that happens in the hub is an Event fired here.

Listeners are removed by calling what `listen` returned; a failing listener is logged and never
stops the others. Every event carries a Context, so any change can be traced to what caused it.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.clock import Clock

_LOGGER = logging.getLogger(__name__)

MATCH_ALL = "*"

# Event types the core fires; plugins add their own, namespaced by domain (`ocpp_boot`, ...).
EVENT_STATE_CHANGED = "state_changed"
EVENT_CALL_SERVICE = "call_service"
EVENT_SERVICE_REGISTERED = "service_registered"
EVENT_HUB_START = "hub_start"
EVENT_HUB_STARTED = "hub_started"
EVENT_HUB_STOP = "hub_stop"
EVENT_PLUGIN_FAILED = "plugin_failed"


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Context:
    """Who or what caused something: a user, an automation run, a charger message.

    A child context (`child()`) keeps the parent's id, so a charger command can be traced back to
    the automation run and the trigger that caused it.
    """

    id: str = field(default_factory=new_id)
    parent_id: str | None = None
    user_id: str | None = None

    def child(self) -> Context:
        return Context(parent_id=self.id, user_id=self.user_id)

    def as_dict(self) -> dict[str, str | None]:
        return {"id": self.id, "parent_id": self.parent_id, "user_id": self.user_id}


@dataclass(frozen=True, slots=True)
class Event:
    event_type: str
    data: Mapping[str, Any]
    context: Context
    time_fired: datetime
    origin: str = "local"  # "remote" for events relayed from another hub

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "data": dict(self.data),
            "context": self.context.as_dict(),
            "time_fired": self.time_fired.isoformat(),
            "origin": self.origin,
        }


Listener = Callable[[Event], Any]
EventFilter = Callable[[Mapping[str, Any]], bool]
TaskRunner = Callable[[Coroutine[Any, Any, Any], str], Any]


@dataclass(slots=True)
class _Subscription:
    callback: Listener
    event_filter: EventFilter | None
    is_coroutine: bool
    once: bool = False
    removed: bool = False


class EventBus:
    """fire(type, data) / listen(type, callback) -> remove.

    Sync listeners run inline, in order of subscription; coroutine listeners are handed to the
    hub's task runner so they are tracked and awaited at shutdown.
    """

    def __init__(self, clock: Clock, run_task: TaskRunner) -> None:
        self._clock = clock
        self._run_task = run_task
        self._listeners: dict[str, list[_Subscription]] = {}

    def listen(
        self,
        event_type: str,
        callback: Listener,
        event_filter: EventFilter | None = None,
        *,
        once: bool = False,
    ) -> Callable[[], None]:
        """Subscribe; `MATCH_ALL` ("*") receives every event. Returns the unsubscribe callable."""
        sub = _Subscription(
            callback, event_filter, inspect.iscoroutinefunction(callback), once=once
        )
        # Copy-on-write so a listener that (un)subscribes during fire() does not disturb it.
        self._listeners[event_type] = [*self._listeners.get(event_type, ()), sub]

        def remove() -> None:
            if sub.removed:
                return
            sub.removed = True
            remaining = [s for s in self._listeners.get(event_type, ()) if s is not sub]
            if remaining:
                self._listeners[event_type] = remaining
            else:
                self._listeners.pop(event_type, None)

        return remove

    def listen_once(self, event_type: str, callback: Listener) -> Callable[[], None]:
        return self.listen(event_type, callback, once=True)

    def listener_count(self) -> dict[str, int]:
        return {etype: len(subs) for etype, subs in self._listeners.items()}

    def fire(
        self,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        context: Context | None = None,
        origin: str = "local",
    ) -> Event:
        payload: Mapping[str, Any] = MappingProxyType(dict(data)) if data else _EMPTY
        subs = self._listeners.get(event_type, ())
        wildcard = self._listeners.get(MATCH_ALL, ()) if event_type != MATCH_ALL else ()
        event = Event(event_type, payload, context or Context(), self._clock.now(), origin)
        for sub in (*subs, *wildcard):
            if sub.removed:
                continue
            if sub.event_filter is not None:
                try:
                    if not sub.event_filter(payload):
                        continue
                except Exception:
                    _LOGGER.exception("event filter for %s failed", event_type)
                    continue
            if sub.once:
                sub.removed = True
                self._drop(sub)
            self._dispatch(sub, event)
        return event

    def _drop(self, sub: _Subscription) -> None:
        for etype, subs in list(self._listeners.items()):
            if sub in subs:
                remaining = [s for s in subs if s is not sub]
                if remaining:
                    self._listeners[etype] = remaining
                else:
                    del self._listeners[etype]

    def _dispatch(self, sub: _Subscription, event: Event) -> None:
        if sub.is_coroutine:
            self._run_task(_guard(sub.callback, event), f"listener {event.event_type}")
            return
        try:
            result = sub.callback(event)
        except Exception:
            _LOGGER.exception("listener %r for %s failed", sub.callback, event.event_type)
            return
        if inspect.isawaitable(result):
            self._run_task(_guard_awaitable(result, sub.callback, event), "listener")


_EMPTY: Mapping[str, Any] = MappingProxyType({})


async def _guard(callback: Listener, event: Event) -> None:
    try:
        await callback(event)
    except Exception:
        _LOGGER.exception("listener %r for %s failed", callback, event.event_type)


async def _guard_awaitable(awaitable: Any, callback: Listener, event: Event) -> None:
    try:
        await awaitable
    except Exception:
        _LOGGER.exception("listener %r for %s failed", callback, event.event_type)
