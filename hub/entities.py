"""Entities (things with a state) and the registry that gives each a stable, user-editable id.

Plugins declare entities as frozen description dataclasses with value functions; the registry
maps a plugin's unique_id to the entity_id, name, site and disabled flag a user chose,
across restarts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from hub.bus import Context
from hub.states import STATE_UNAVAILABLE, valid_entity_id
from hub.storage.store import JsonStore

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

EVENT_ENTITY_REGISTRY_UPDATED = "entity_registry_updated"
STORAGE_VERSION = 1
SAVE_DELAY = 2.0  # seconds: a burst of registrations becomes one write

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class EntityDescription:
    """What an entity is, declared as data (a tuple of these per device type)."""

    key: str
    name: str | None = None
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None  # "measurement", "total_increasing"
    icon: str | None = None
    enabled_default: bool = True


@dataclass(frozen=True, kw_only=True)
class ValueDescription(EntityDescription, Generic[T]):
    """An entity whose state is computed from a device's data object by `value_fn`."""

    value_fn: Callable[[T], Any]
    attrs_fn: Callable[[T], Mapping[str, Any]] | None = None
    available_fn: Callable[[T], bool] | None = None


class Entity:
    """Base of everything that has a state. Subclasses set `domain` and override `native_state`."""

    domain: ClassVar[str] = "sensor"
    description: EntityDescription | None = None

    def __init__(
        self,
        unique_id: str | None,
        name: str | None = None,
        *,
        description: EntityDescription | None = None,
    ) -> None:
        self.unique_id = unique_id
        if description is not None:
            self.description = description
        self._name = name
        self.entity_id: str = ""
        self.hub: Hub | None = None
        self.registry_entry: RegistryEntry | None = None

    # --- what the state machine sees -------------------------------------------------------
    @property
    def name(self) -> str | None:
        if self.registry_entry and self.registry_entry.name:
            return self.registry_entry.name
        return self._name or (self.description.name if self.description else None)

    @property
    def unit(self) -> str | None:
        return self.description.unit if self.description else None

    @property
    def available(self) -> bool:
        return True

    def native_state(self) -> Any:
        return None

    def state_attributes(self) -> Mapping[str, Any]:
        return {}

    def suggested_object_id(self) -> str:
        return slugify(self._name or self.unique_id or self.domain)

    # --- lifecycle ------------------------------------------------------------------------
    def write_state(self, context: Context | None = None) -> None:
        """Publish the entity's current state; a no-op until it was added to a hub."""
        if self.hub is None or not self.entity_id:
            return
        if self.registry_entry is not None and self.registry_entry.disabled:
            return
        attrs: dict[str, Any] = {}
        if self.name:
            attrs["friendly_name"] = self.name
        if self.description is not None:
            for key in ("device_class", "state_class", "icon"):
                value = getattr(self.description, key)
                if value is not None:
                    attrs[key] = value
        if self.registry_entry is not None and self.registry_entry.site:
            attrs["site"] = self.registry_entry.site
        if not self.available:
            self.hub.states.set(self.entity_id, STATE_UNAVAILABLE, attrs, context=context)
            return
        attrs.update(self.state_attributes())
        self.hub.states.set(
            self.entity_id, self.native_state(), attrs, unit=self.unit, context=context
        )

    async def added_to_hub(self) -> None:
        """Called once the entity has an id; subscribe to things here."""

    async def removed_from_hub(self) -> None:
        """Undo what added_to_hub did."""


class DescribedEntity(Entity, Generic[T]):
    """An entity whose state is `description.value_fn(source())`; the peblar pattern."""

    description: ValueDescription[T]

    def __init__(
        self,
        source: Callable[[], T],
        description: ValueDescription[T],
        unique_prefix: str,
        device_name: str | None = None,
    ) -> None:
        name = f"{device_name} {description.name or description.key}" if device_name else None
        super().__init__(f"{unique_prefix}-{description.key}", name, description=description)
        self._source = source

    @property
    def available(self) -> bool:
        fn = self.description.available_fn
        return fn(self._source()) if fn else True

    def native_state(self) -> Any:
        return self.description.value_fn(self._source())

    def state_attributes(self) -> Mapping[str, Any]:
        fn = self.description.attrs_fn
        return fn(self._source()) if fn else {}


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    entity_id: str
    unique_id: str
    platform: str
    name: str | None = None  # the user's name; None means the plugin's own
    site: str | None = None
    disabled_by: str | None = None  # None, "user" or "plugin"

    @property
    def disabled(self) -> bool:
        return self.disabled_by is not None


@dataclass(slots=True)
class _Store:
    by_entity_id: dict[str, RegistryEntry] = field(default_factory=dict)
    by_unique: dict[tuple[str, str, str], str] = field(default_factory=dict)


class EntityRegistry:
    """Persistent unique_id -> entity_id map, in `<config>/.storage/entity_registry.json`."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._file = JsonStore(hub, "entity_registry", STORAGE_VERSION, SAVE_DELAY)
        self._store = _Store()
        self._live: dict[str, Entity] = {}
        self._load()

    # --- persistence ----------------------------------------------------------------------
    def _load(self) -> None:
        data = self._file.load()
        try:
            for item in (data or {}).get("entities", []):
                self._index(RegistryEntry(**item))
        except (AttributeError, KeyError, TypeError) as err:
            # A damaged registry must not stop the hub: entities get fresh ids.
            self._file.set_aside(err)
            self._store = _Store()

    def _index(self, entry: RegistryEntry) -> None:
        domain = entry.entity_id.split(".", 1)[0]
        self._store.by_entity_id[entry.entity_id] = entry
        self._store.by_unique[(domain, entry.platform, entry.unique_id)] = entry.entity_id

    def _schedule_save(self) -> None:
        self._file.schedule_save(lambda: {"entities": list(self._store.by_entity_id.values())})

    def flush(self) -> None:
        """Write now (at shutdown)."""
        if self._file.path is not None:
            self._schedule_save()
            self._file.flush()

    # --- queries --------------------------------------------------------------------------
    def get(self, entity_id: str) -> RegistryEntry | None:
        return self._store.by_entity_id.get(entity_id)

    def entity_id_for(self, domain: str, platform: str, unique_id: str) -> str | None:
        return self._store.by_unique.get((domain, platform, unique_id))

    def entries(self) -> list[RegistryEntry]:
        return list(self._store.by_entity_id.values())

    def live(self, entity_id: str) -> Entity | None:
        return self._live.get(entity_id)

    # --- changes --------------------------------------------------------------------------
    def get_or_create(
        self,
        domain: str,
        platform: str,
        unique_id: str,
        *,
        suggested_object_id: str,
        site: str | None = None,
        disabled: bool = False,
    ) -> RegistryEntry:
        known = self.entity_id_for(domain, platform, unique_id)
        if known is not None:
            return self._store.by_entity_id[known]
        entity_id = self._free_entity_id(domain, suggested_object_id)
        entry = RegistryEntry(
            entity_id, unique_id, platform, site=site, disabled_by="plugin" if disabled else None
        )
        self._index(entry)
        self._schedule_save()
        return entry

    def _free_entity_id(self, domain: str, object_id: str) -> str:
        base = f"{domain}.{slugify(object_id) or 'unnamed'}"
        candidate, n = base, 2
        while candidate in self._store.by_entity_id or self._hub.states.get(candidate):
            candidate, n = f"{base}_{n}", n + 1
        return candidate

    def update(
        self,
        entity_id: str,
        *,
        new_entity_id: str | None = None,
        name: str | None = None,
        site: str | None = None,
        disabled: bool | None = None,
        context: Context | None = None,
    ) -> RegistryEntry:
        """Rename, re-site or (dis|en)able an entity; a live entity follows at once."""
        old = self._store.by_entity_id.get(entity_id)
        if old is None:
            raise KeyError(f"entity {entity_id} is not in the registry")
        changes: dict[str, Any] = {}
        if new_entity_id is not None and new_entity_id != entity_id:
            if not valid_entity_id(new_entity_id):
                raise ValueError(f"invalid entity id {new_entity_id!r}")
            if new_entity_id.split(".", 1)[0] != entity_id.split(".", 1)[0]:
                raise ValueError("an entity id keeps its domain")
            # Same rule as _free_entity_id: an id held by an unregistered entity's state is taken.
            if new_entity_id in self._store.by_entity_id or self._hub.states.get(new_entity_id):
                raise ValueError(f"entity id {new_entity_id} is already taken")
            changes["entity_id"] = new_entity_id
        if name is not None:
            changes["name"] = name or None
        if site is not None:
            changes["site"] = site or None
        if disabled is not None:
            changes["disabled_by"] = "user" if disabled else None
        new = replace(old, **changes)
        del self._store.by_entity_id[entity_id]
        self._index(new)
        self._schedule_save()
        self._follow(old, new, context)
        self._hub.bus.fire(
            EVENT_ENTITY_REGISTRY_UPDATED,
            {"action": "update", "entity_id": new.entity_id, "old_entity_id": entity_id},
            context,
        )
        return new

    def _follow(self, old: RegistryEntry, new: RegistryEntry, context: Context | None) -> None:
        entity = self._live.pop(old.entity_id, None)
        if entity is None:
            return
        if old.entity_id != new.entity_id or new.disabled:
            self._hub.states.remove(old.entity_id, context)
        entity.entity_id = new.entity_id
        entity.registry_entry = new
        self._live[new.entity_id] = entity
        entity.write_state(context)

    # --- live entities --------------------------------------------------------------------
    async def add(self, platform: str, entities: Iterable[Entity], site: str | None = None) -> None:
        """Give each entity its registered id and publish its first state."""
        for entity in entities:
            if entity.unique_id is None:
                entity.entity_id = self._free_entity_id(entity.domain, entity.suggested_object_id())
            else:
                enabled = entity.description.enabled_default if entity.description else True
                entry = self.get_or_create(
                    entity.domain,
                    platform,
                    entity.unique_id,
                    suggested_object_id=entity.suggested_object_id(),
                    site=site,
                    disabled=not enabled,
                )
                entity.entity_id, entity.registry_entry = entry.entity_id, entry
            if entity.entity_id in self._live:
                raise ValueError(f"entity {entity.entity_id} was added twice")
            entity.hub = self._hub
            self._live[entity.entity_id] = entity
            await entity.added_to_hub()
            entity.write_state()

    async def remove(self, entity_id: str) -> None:
        entity = self._live.pop(entity_id, None)
        if entity is not None:
            await entity.removed_from_hub()
            self._hub.states.remove(entity_id)


_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    return _SLUG.sub("_", text.lower()).strip("_")
