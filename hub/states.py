"""The state machine: the one current State of every entity, and `state_changed` when it changes.

States are immutable and hold native values (floats stay floats), a unit and attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hub.bus import EVENT_STATE_CHANGED, Context

if TYPE_CHECKING:
    from hub.bus import EventBus
    from hub.clock import Clock

STATE_UNAVAILABLE = "unavailable"
STATE_UNKNOWN = None  # a native value not yet known

_ENTITY_ID = re.compile(r"^(?!_)[a-z0-9_]+(?<!_)\.(?!_)[a-z0-9_]+(?<!_)$")


def valid_entity_id(entity_id: str) -> bool:
    return bool(_ENTITY_ID.fullmatch(entity_id))


def split_entity_id(entity_id: str) -> tuple[str, str]:
    domain, _, object_id = entity_id.partition(".")
    return domain, object_id


@dataclass(frozen=True, slots=True)
class State:
    entity_id: str
    state: Any
    attributes: Mapping[str, Any]
    last_changed: datetime
    last_updated: datetime
    context: Context
    unit: str | None = None

    @property
    def domain(self) -> str:
        return split_entity_id(self.entity_id)[0]

    @property
    def available(self) -> bool:
        return self.state != STATE_UNAVAILABLE

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "state": self.state,
            "unit": self.unit,
            "attributes": dict(self.attributes),
            "last_changed": self.last_changed.isoformat(),
            "last_updated": self.last_updated.isoformat(),
            "context": self.context.as_dict(),
        }


class StateMachine:
    def __init__(self, bus: EventBus, clock: Clock) -> None:
        self._bus = bus
        self._clock = clock
        self._states: dict[str, State] = {}

    def get(self, entity_id: str) -> State | None:
        return self._states.get(entity_id)

    def all(self, domain: str | None = None) -> list[State]:
        if domain is None:
            return list(self._states.values())
        prefix = domain + "."
        return [s for eid, s in self._states.items() if eid.startswith(prefix)]

    def entity_ids(self, domain: str | None = None) -> list[str]:
        return [s.entity_id for s in self.all(domain)]

    def set(
        self,
        entity_id: str,
        state: Any,
        attributes: Mapping[str, Any] | None = None,
        *,
        unit: str | None = None,
        context: Context | None = None,
        force_update: bool = False,
    ) -> State:
        """Set a state; fires `state_changed` only when value, unit or attributes differ."""
        if not valid_entity_id(entity_id):
            raise ValueError(f"invalid entity id {entity_id!r}: expected domain.object_id")
        attrs = dict(attributes or {})
        old = self._states.get(entity_id)
        same_state = old is not None and old.state == state and old.unit == unit
        if same_state and old is not None and old.attributes == attrs and not force_update:
            return old
        now = self._clock.now()
        last_changed = old.last_changed if same_state and old is not None else now
        new = State(
            entity_id,
            state,
            MappingProxyType(attrs),
            last_changed,
            now,
            context or Context(),
            unit,
        )
        self._states[entity_id] = new
        self._bus.fire(
            EVENT_STATE_CHANGED,
            {"entity_id": entity_id, "old_state": old, "new_state": new},
            new.context,
        )
        return new

    def remove(self, entity_id: str, context: Context | None = None) -> bool:
        old = self._states.pop(entity_id, None)
        if old is None:
            return False
        self._bus.fire(
            EVENT_STATE_CHANGED,
            {"entity_id": entity_id, "old_state": old, "new_state": None},
            context or Context(),
        )
        return True
