"""The state machine as a dashboard or automation sees it: current states and `state_changed`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.bus import EVENT_STATE_CHANGED, Context, Event
from hub.clock import SimClock
from hub.core import Hub
from hub.states import STATE_UNAVAILABLE


@pytest.fixture
def changes(hub: Hub) -> list[Event]:
    seen: list[Event] = []
    hub.bus.listen(EVENT_STATE_CHANGED, seen.append)
    return seen


async def test_set_then_get_returns_native_value_and_unit(hub: Hub, clock: SimClock) -> None:
    """Given a charger reporting 7.4 kW, the state is the float 7.4 with unit kW, stamped now."""
    state = hub.states.set("sensor.garage_power", 7.4, unit="kW")

    got = hub.states.get("sensor.garage_power")
    assert got is state
    assert got.state == 7.4 and isinstance(got.state, float)
    assert got.unit == "kW"
    assert got.domain == "sensor"
    assert got.available
    assert got.last_changed == got.last_updated == clock.now()


async def test_unknown_entity_has_no_state(hub: Hub) -> None:
    assert hub.states.get("sensor.nothing_here") is None


async def test_native_types_survive(hub: Hub) -> None:
    hub.states.set("sensor.energy", 12.0)
    hub.states.set("binary_sensor.plugged", True)
    hub.states.set("sensor.sessions", 3)

    assert type(hub.states.get("sensor.energy").state) is float  # type: ignore[union-attr]
    assert hub.states.get("binary_sensor.plugged").state is True  # type: ignore[union-attr]
    assert type(hub.states.get("sensor.sessions").state) is int  # type: ignore[union-attr]


async def test_unavailable_state_reports_not_available(hub: Hub) -> None:
    state = hub.states.set("sensor.garage_power", STATE_UNAVAILABLE)

    assert not state.available


async def test_attributes_are_immutable_and_detached(hub: Hub) -> None:
    """Neither a listener nor the caller's dict can change a published state's attributes."""
    attrs = {"friendly_name": "Garage power"}
    state = hub.states.set("sensor.garage_power", 7.4, attrs)
    attrs["friendly_name"] = "Changed behind our back"

    assert state.attributes["friendly_name"] == "Garage power"
    with pytest.raises(TypeError):
        state.attributes["friendly_name"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        state.state = 0.0  # type: ignore[misc]


async def test_first_set_fires_state_changed_with_no_old_state(
    hub: Hub, changes: list[Event]
) -> None:
    new = hub.states.set("sensor.garage_power", 0.0, unit="kW")

    assert len(changes) == 1
    assert changes[0].data["entity_id"] == "sensor.garage_power"
    assert changes[0].data["old_state"] is None
    assert changes[0].data["new_state"] is new


async def test_value_change_fires_with_old_and_new(
    hub: Hub, clock: SimClock, changes: list[Event]
) -> None:
    """Given a charger at 0 kW, when it starts charging at 11 kW, listeners see both values."""
    old = hub.states.set("sensor.garage_power", 0.0, unit="kW")
    await clock.advance(60)

    new = hub.states.set("sensor.garage_power", 11.0, unit="kW")

    assert len(changes) == 2
    assert changes[1].data["old_state"] is old
    assert changes[1].data["new_state"] is new
    assert new.last_changed == new.last_updated == old.last_changed + timedelta(seconds=60)


async def test_same_value_and_attributes_fire_nothing(
    hub: Hub, clock: SimClock, changes: list[Event]
) -> None:
    first = hub.states.set("sensor.garage_power", 11.0, {"phases": 3}, unit="kW")
    await clock.advance(60)

    again = hub.states.set("sensor.garage_power", 11.0, {"phases": 3}, unit="kW")

    assert len(changes) == 1
    assert again is first
    assert again.last_updated == first.last_updated


async def test_unit_change_is_a_change(hub: Hub, changes: list[Event]) -> None:
    hub.states.set("sensor.energy", 1.0, unit="kWh")
    hub.states.set("sensor.energy", 1.0, unit="Wh")

    assert len(changes) == 2
    assert hub.states.get("sensor.energy").unit == "Wh"  # type: ignore[union-attr]


async def test_attribute_only_change_updates_last_updated_not_last_changed(
    hub: Hub, clock: SimClock, changes: list[Event]
) -> None:
    """Given 11 kW on 3 phases, when only the phase count changes, the value did not 'change'."""
    first = hub.states.set("sensor.garage_power", 11.0, {"phases": 3}, unit="kW")
    await clock.advance(30)

    second = hub.states.set("sensor.garage_power", 11.0, {"phases": 1}, unit="kW")

    assert len(changes) == 2
    assert changes[1].data["old_state"].attributes["phases"] == 3
    assert changes[1].data["new_state"].attributes["phases"] == 1
    assert second.last_changed == first.last_changed
    assert second.last_updated == first.last_updated + timedelta(seconds=30)


async def test_force_update_fires_even_when_nothing_changed(
    hub: Hub, clock: SimClock, changes: list[Event]
) -> None:
    first = hub.states.set("sensor.garage_power", 11.0, unit="kW")
    await clock.advance(10)

    forced = hub.states.set("sensor.garage_power", 11.0, unit="kW", force_update=True)

    assert len(changes) == 2
    assert forced is not first
    assert forced.last_updated == clock.now()
    assert changes[1].data["old_state"] is first


async def test_remove_fires_with_new_state_none(hub: Hub, changes: list[Event]) -> None:
    """Given a charger entity, when it is removed, listeners are told with new_state None."""
    old = hub.states.set("sensor.garage_power", 11.0)
    ctx = Context(user_id="alice")

    assert hub.states.remove("sensor.garage_power", context=ctx) is True

    assert hub.states.get("sensor.garage_power") is None
    assert changes[-1].data == {
        "entity_id": "sensor.garage_power",
        "old_state": old,
        "new_state": None,
    }
    assert changes[-1].context is ctx


async def test_removing_an_unknown_entity_is_quiet(hub: Hub, changes: list[Event]) -> None:
    assert hub.states.remove("sensor.never_existed") is False
    assert changes == []


@pytest.mark.parametrize(
    "bad_id",
    [
        "power",
        "sensor.",
        ".power",
        "Sensor.power",
        "sensor.Power",
        "sensor.garage power",
        "sensor.garage-power",
        "sensor.a.b",
        "sensor._power",
        "sensor.power_",
        "_sensor.power",
        "sensor.power\n",
        "",
    ],
)
async def test_invalid_entity_ids_are_rejected(hub: Hub, changes: list[Event], bad_id: str) -> None:
    with pytest.raises(ValueError, match="invalid entity id"):
        hub.states.set(bad_id, 1)

    assert changes == []
    assert hub.states.all() == []


async def test_all_and_entity_ids_filter_by_domain(hub: Hub) -> None:
    hub.states.set("sensor.power", 1.0)
    hub.states.set("sensor.energy", 2.0)
    hub.states.set("switch.charging", True)
    hub.states.set("sensor_extra.thing", 0)  # a domain that merely starts with "sensor"

    assert sorted(s.entity_id for s in hub.states.all("sensor")) == [
        "sensor.energy",
        "sensor.power",
    ]
    assert hub.states.entity_ids("switch") == ["switch.charging"]
    assert len(hub.states.all()) == 4
    assert hub.states.all("light") == []


async def test_context_propagates_to_state_and_event(hub: Hub, changes: list[Event]) -> None:
    """Given a state set on behalf of a user's command, both state and event carry that context."""
    command = Context(user_id="alice").child()

    state = hub.states.set("switch.charging", False, context=command)

    assert state.context is command
    assert changes[0].context is command
    assert state.as_dict()["context"]["user_id"] == "alice"


async def test_state_as_dict_is_serialisable_snapshot(hub: Hub) -> None:
    state = hub.states.set("sensor.garage_power", 7.4, {"phases": 3}, unit="kW")

    as_dict = state.as_dict()

    assert as_dict["state"] == 7.4
    assert as_dict["unit"] == "kW"
    assert as_dict["attributes"] == {"phases": 3}
    assert as_dict["last_changed"] == "2026-03-02T06:00:00+00:00"
