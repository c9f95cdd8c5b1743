"""Entities declared as data (the peblar pattern) and the registry that keeps a user's choices."""

from __future__ import annotations

import json
import logging
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest

from hub.bus import EVENT_STATE_CHANGED, Context, Event
from hub.clock import SimClock
from hub.core import Hub
from hub.entities import (
    SAVE_DELAY,
    DescribedEntity,
    Entity,
    EntityRegistry,
    ValueDescription,
)
from hub.states import STATE_UNAVAILABLE


@dataclass
class ChargerData:
    """What a (fake) charger's API returns on each poll."""

    power_w: float = 0.0
    energy_wh: float = 0.0
    current_a: tuple[float, float, float] = (0.0, 0.0, 0.0)
    online: bool = True


DESCRIPTIONS: tuple[ValueDescription[ChargerData], ...] = (
    ValueDescription(
        key="power",
        name="Power",
        unit="kW",
        device_class="power",
        state_class="measurement",
        value_fn=lambda d: d.power_w / 1000,
        available_fn=lambda d: d.online,
    ),
    ValueDescription(
        key="energy",
        name="Session energy",
        unit="kWh",
        device_class="energy",
        state_class="total_increasing",
        value_fn=lambda d: round(d.energy_wh / 1000, 3),
    ),
    ValueDescription(
        key="current_l1",
        name="Current L1",
        unit="A",
        value_fn=lambda d: d.current_a[0],
        attrs_fn=lambda d: {"phases": sum(1 for a in d.current_a if a > 0)},
    ),
    ValueDescription(
        key="diagnostic_rssi",
        name="Signal",
        unit="dBm",
        enabled_default=False,
        value_fn=lambda d: -60,
    ),
)


def charger_entities(
    data: ChargerData, serial: str = "PB-1", device: str = "Garage charger"
) -> list[DescribedEntity[ChargerData]]:
    return [DescribedEntity(lambda: data, desc, serial, device) for desc in DESCRIPTIONS]


def test_descriptions_are_frozen_data() -> None:
    with pytest.raises(FrozenInstanceError):
        DESCRIPTIONS[0].unit = "W"  # type: ignore[misc]


async def test_described_entities_publish_states_with_units_and_names(hub: Hub) -> None:
    """Given a charger drawing 7.4 kW, adding its entities publishes named states with units."""
    data = ChargerData(power_w=7400.0, energy_wh=1234.0, current_a=(10.7, 10.6, 0.0))

    await hub.entities.add("demo", charger_entities(data))

    power = hub.states.get("sensor.garage_charger_power")
    assert power is not None
    assert power.state == 7.4
    assert power.unit == "kW"
    assert power.attributes["friendly_name"] == "Garage charger Power"
    assert power.attributes["device_class"] == "power"
    assert power.attributes["state_class"] == "measurement"
    energy = hub.states.get("sensor.garage_charger_session_energy")
    assert energy is not None
    assert (energy.state, energy.unit) == (1.234, "kWh")
    current = hub.states.get("sensor.garage_charger_current_l1")
    assert current is not None
    assert current.state == 10.7
    assert current.attributes["phases"] == 2


async def test_disabled_by_default_entity_is_registered_but_writes_no_state(hub: Hub) -> None:
    await hub.entities.add("demo", charger_entities(ChargerData()))

    entry = hub.entities.get("sensor.garage_charger_signal")
    assert entry is not None
    assert entry.disabled and entry.disabled_by == "plugin"
    assert hub.states.get("sensor.garage_charger_signal") is None
    assert len(hub.states.all("sensor")) == 3


async def test_updating_device_data_and_writing_state_changes_the_state(
    hub: Hub, clock: SimClock
) -> None:
    """Given a charger at 0 kW, when a poll reports 11 kW and the entity writes its state, the
    state changes and listeners hear about it with the context given."""
    data = ChargerData()
    entities = charger_entities(data)
    await hub.entities.add("demo", entities)
    changes: list[Event] = []
    hub.bus.listen(
        EVENT_STATE_CHANGED,
        changes.append,
        lambda d: d["entity_id"] == "sensor.garage_charger_power",
    )
    await clock.advance(180)

    data.power_w = 11_000.0
    poll = Context()
    for entity in entities:
        entity.write_state(poll)

    power = hub.states.get("sensor.garage_charger_power")
    assert power is not None and power.state == 11.0
    assert power.last_changed == clock.now()
    assert len(changes) == 1
    assert changes[0].data["old_state"].state == 0.0
    assert changes[0].context is poll
    # entities whose value did not move fired nothing
    energy = hub.states.get("sensor.garage_charger_session_energy")
    assert energy is not None and energy.last_updated < clock.now()


async def test_offline_device_makes_entity_unavailable(hub: Hub) -> None:
    data = ChargerData(power_w=3000.0)
    entities = charger_entities(data)
    await hub.entities.add("demo", entities)

    data.online = False
    entities[0].write_state()

    power = hub.states.get("sensor.garage_charger_power")
    assert power is not None
    assert power.state == STATE_UNAVAILABLE
    assert not power.available
    assert power.attributes["friendly_name"] == "Garage charger Power"


async def test_entity_not_added_writes_nothing(hub: Hub) -> None:
    entity = charger_entities(ChargerData())[0]

    entity.write_state()

    assert hub.states.all() == []


async def test_registry_keeps_user_choices_across_restart(tmp_path: Path, clock: SimClock) -> None:
    """Given a user who renamed, re-named, re-sited one entity and disabled another, when the hub
    restarts and the plugin adds the same entities again, the user's choices are all kept."""
    config = tmp_path / "config"
    first = Hub(config, clock=clock)
    await first.start()
    await first.entities.add("demo", charger_entities(ChargerData(power_w=7400.0)))
    first.entities.update(
        "sensor.garage_charger_power",
        new_entity_id="sensor.wallbox_power",
        name="Wallbox power",
        site="home",
    )
    first.entities.update("sensor.garage_charger_session_energy", disabled=True)
    assert first.states.get("sensor.garage_charger_power") is None
    assert first.states.get("sensor.wallbox_power") is not None
    assert first.states.get("sensor.garage_charger_session_energy") is None
    await first.stop()
    assert (config / ".storage" / "entity_registry.json").exists()

    second = Hub(config, clock=clock)
    await second.start()
    try:
        await second.entities.add("demo", charger_entities(ChargerData(power_w=3700.0)))

        power = second.states.get("sensor.wallbox_power")
        assert power is not None
        assert power.state == 3.7
        assert power.attributes["friendly_name"] == "Wallbox power"
        assert power.attributes["site"] == "home"
        assert second.states.get("sensor.garage_charger_power") is None
        assert second.states.get("sensor.garage_charger_session_energy") is None
        entry = second.entities.get("sensor.garage_charger_session_energy")
        assert entry is not None and entry.disabled_by == "user"
        # nothing was re-created under a fresh id
        assert len(second.entities.entries()) == len(DESCRIPTIONS)
    finally:
        await second.stop()


async def test_re_enabling_an_entity_publishes_its_state_again(hub: Hub) -> None:
    await hub.entities.add("demo", charger_entities(ChargerData(energy_wh=500.0)))
    hub.entities.update("sensor.garage_charger_session_energy", disabled=True)
    assert hub.states.get("sensor.garage_charger_session_energy") is None

    hub.entities.update("sensor.garage_charger_session_energy", disabled=False)

    energy = hub.states.get("sensor.garage_charger_session_energy")
    assert energy is not None and energy.state == 0.5


async def test_update_announces_rename_on_the_bus(hub: Hub) -> None:
    await hub.entities.add("demo", charger_entities(ChargerData()))
    seen: list[Event] = []
    hub.bus.listen("entity_registry_updated", seen.append)
    ctx = Context(user_id="alice")

    hub.entities.update(
        "sensor.garage_charger_power", new_entity_id="sensor.wallbox_power", context=ctx
    )

    assert seen[0].data["entity_id"] == "sensor.wallbox_power"
    assert seen[0].data["old_entity_id"] == "sensor.garage_charger_power"
    assert seen[0].context is ctx
    assert hub.entities.live("sensor.wallbox_power") is not None
    assert hub.entities.live("sensor.garage_charger_power") is None


async def test_registry_save_is_debounced_on_the_sim_clock(hub: Hub, clock: SimClock) -> None:
    """A burst of registrations is written once, SAVE_DELAY after it, not at every entity."""
    path = hub.config_dir / ".storage" / "entity_registry.json"  # type: ignore[operator]
    await hub.entities.add("demo", charger_entities(ChargerData()))
    await hub.block_till_done()
    assert not path.exists()

    await clock.advance(SAVE_DELAY)
    await hub.block_till_done()

    saved = json.loads(path.read_text())["data"]
    assert {e["unique_id"] for e in saved["entities"]} == {f"PB-1-{d.key}" for d in DESCRIPTIONS}


async def test_duplicate_suggested_ids_get_a_numeric_suffix(hub: Hub) -> None:
    """Given two chargers both called "Garage charger", the second gets `_2` ids."""
    await hub.entities.add("demo", charger_entities(ChargerData(power_w=1000.0), "PB-1"))
    await hub.entities.add("demo", charger_entities(ChargerData(power_w=2000.0), "PB-2"))

    assert hub.states.get("sensor.garage_charger_power").state == 1.0  # type: ignore[union-attr]
    assert hub.states.get("sensor.garage_charger_power_2").state == 2.0  # type: ignore[union-attr]
    assert hub.entities.entity_id_for("sensor", "demo", "PB-2-power") == (
        "sensor.garage_charger_power_2"
    )


async def test_entity_without_unique_id_avoids_taken_ids_but_is_not_registered(
    hub: Hub,
) -> None:
    class Thermometer(Entity):
        def native_state(self) -> float:
            return 21.5

    hub.states.set("sensor.outside", 3.0)
    entity = Thermometer(None, "Outside")

    await hub.entities.add("demo", [entity])

    assert entity.entity_id == "sensor.outside_2"
    assert hub.states.get("sensor.outside_2").state == 21.5  # type: ignore[union-attr]
    assert hub.entities.entries() == []


async def test_adding_the_same_entity_twice_is_refused(hub: Hub) -> None:
    data = ChargerData()
    await hub.entities.add("demo", charger_entities(data)[:1])

    with pytest.raises(ValueError, match="added twice"):
        await hub.entities.add("demo", charger_entities(data)[:1])


async def test_corrupt_registry_does_not_stop_the_hub(
    tmp_path: Path, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a registry file cut off mid-write, the hub still starts, with an empty registry, and
    the damaged file is kept aside for a human."""
    storage = tmp_path / "config" / ".storage"
    storage.mkdir(parents=True)
    (storage / "entity_registry.json").write_text('{"version": 1, "entities": [{"entity_')

    with caplog.at_level(logging.ERROR, logger="hub.entities"):
        hub = Hub(tmp_path / "config", clock=clock)
    await hub.start()
    try:
        await hub.entities.add("demo", charger_entities(ChargerData(power_w=1000.0)))

        assert "unreadable" in caplog.text
        assert (storage / "entity_registry.corrupt").read_text().endswith('"entity_')
        assert hub.states.get("sensor.garage_charger_power").state == 1.0  # type: ignore[union-attr]
    finally:
        await hub.stop()
    saved = json.loads((storage / "entity_registry.json").read_text())["data"]
    assert len(saved["entities"]) == 4


async def test_registry_with_wrong_shape_is_treated_as_corrupt(
    tmp_path: Path, clock: SimClock
) -> None:
    storage = tmp_path / ".storage"
    storage.mkdir()
    good = {"entity_id": "sensor.kept", "unique_id": "x", "platform": "demo"}
    bad = {"entity_id": "sensor.bad", "surprise": True}
    document = {"version": 1, "data": {"entities": [good, bad]}}
    (storage / "entity_registry.json").write_text(json.dumps(document))

    registry = EntityRegistry(Hub(tmp_path, clock=clock))

    assert registry.entries() == []  # nothing half-loaded
    assert (storage / "entity_registry.corrupt").exists()


@pytest.mark.parametrize(
    ("new_id", "message"),
    [
        ("sensor.Wallbox Power", "invalid entity id"),
        ("wallbox_power", "invalid entity id"),
        ("switch.wallbox_power", "keeps its domain"),
        ("sensor.garage_charger_session_energy", "already taken"),
    ],
)
async def test_bad_renames_are_refused_and_change_nothing(
    hub: Hub, new_id: str, message: str
) -> None:
    await hub.entities.add("demo", charger_entities(ChargerData(power_w=1000.0)))

    with pytest.raises(ValueError, match=message):
        hub.entities.update("sensor.garage_charger_power", new_entity_id=new_id)

    assert hub.entities.get("sensor.garage_charger_power") is not None
    assert hub.states.get("sensor.garage_charger_power").state == 1.0  # type: ignore[union-attr]


async def test_rename_onto_an_unregistered_entitys_id_is_refused(hub: Hub) -> None:
    """Given a live entity without a unique id at `sensor.outside`, renaming a registered entity
    onto that id must not take it over."""

    class Thermometer(Entity):
        def native_state(self) -> float:
            return 21.5

    outside = Thermometer(None, "Outside")
    await hub.entities.add("demo", [outside])
    await hub.entities.add("demo", charger_entities(ChargerData(power_w=1000.0)))

    with pytest.raises(ValueError, match="already taken"):
        hub.entities.update("sensor.garage_charger_power", new_entity_id="sensor.outside")

    assert hub.entities.live("sensor.outside") is outside
    assert hub.states.get("sensor.outside").state == 21.5  # type: ignore[union-attr]


async def test_update_of_unknown_entity_raises(hub: Hub) -> None:
    with pytest.raises(KeyError):
        hub.entities.update("sensor.nothing", name="x")


async def test_removed_entity_state_disappears(hub: Hub) -> None:
    await hub.entities.add("demo", charger_entities(ChargerData()))

    await hub.entities.remove("sensor.garage_charger_power")

    assert hub.states.get("sensor.garage_charger_power") is None
    assert hub.entities.live("sensor.garage_charger_power") is None
    assert hub.entities.get("sensor.garage_charger_power") is not None  # still registered
