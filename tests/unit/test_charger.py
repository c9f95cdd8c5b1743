"""ChargerEntity: a tiny in-test charger on a started hub, seen as a user would see it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.bus import EVENT_STATE_CHANGED, Event
from hub.charging import (
    ChargerCapability,
    ChargerData,
    ChargerEntity,
    ChargingLimit,
    ChargingSchedule,
    CommandResult,
    ConnectorStatus,
    NotSupported,
    RateUnit,
    SchedulePeriod,
)
from hub.clock import SimClock
from hub.core import Hub

Cap = ChargerCapability


class Wallbox(ChargerEntity):
    """A charger that can take amp limits and start/stop, nothing else (like a basic Modbus box)."""

    supported = frozenset({Cap.LIMIT_AMPS, Cap.START_STOP})

    def __init__(self, unique_id: str) -> None:
        super().__init__(unique_id, data=ChargerData(vendor="Acme", model="WB-22", phases=3))
        self.commands: list[str] = []

    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        assert self.hub is not None
        self.update(limit=schedule.limit_at(self.hub.now()), limit_reason="site.main L2 at limit")
        return CommandResult(True, "written to register 1000")

    async def _do_start(self, id_tag: str | None) -> CommandResult:
        self.commands.append(f"start {id_tag}")
        self.update(status=ConnectorStatus.CHARGING, id_tag=id_tag)
        return CommandResult(True)

    async def _do_stop(self) -> CommandResult:
        self.commands.append("stop")
        return CommandResult(False, "no session")


class Liar(ChargerEntity):
    """Declares a capability but forgot to implement it."""

    supported = frozenset({Cap.RESET})


async def _added(hub: Hub, entity: ChargerEntity) -> ChargerEntity:
    await hub.entities.add("test", [entity])
    return entity


async def test_given_a_charger_added_to_the_hub_then_its_state_and_attributes_appear(
    hub: Hub,
) -> None:
    box = await _added(hub, Wallbox("depot-a-01-1"))
    box.update(status="Available", power_w=0.0, energy_wh=1_234_567.0, current_a=(0.0, 0.0, 0.0))

    state = hub.states.get("charger.depot_a_01_1")
    assert state is not None
    assert box.entity_id == "charger.depot_a_01_1"
    assert state.state == "available"
    assert state.attributes["energy_wh"] == 1_234_567.0
    assert state.attributes["current_a"] == [0.0, 0.0, 0.0]
    assert state.attributes["vendor"] == "Acme"
    assert state.attributes["limit"] is None
    assert state.attributes["capabilities"] == ["limit_amps", "start_stop"]


async def test_when_the_status_changes_then_state_changed_fires_once_per_change(hub: Hub) -> None:
    box = await _added(hub, Wallbox("bay-2"))
    seen: list[Event] = []
    hub.bus.listen(EVENT_STATE_CHANGED, seen.append)

    box.update(status=ConnectorStatus.PREPARING)
    box.update(status="SuspendedEV", id_tag="RFID-42")  # the protocol's own spelling
    box.update(status=ConnectorStatus.SUSPENDED_EV, id_tag="RFID-42")  # nothing new

    assert [e.data["new_state"].state for e in seen] == ["preparing", "suspended_ev"]
    assert seen[1].data["old_state"].state == "preparing"
    assert seen[1].data["new_state"].attributes["id_tag"] == "RFID-42"


async def test_when_an_unsupported_operation_is_asked_then_not_supported_names_it(
    hub: Hub,
) -> None:
    box = await _added(hub, Wallbox("bay-3"))

    with pytest.raises(NotSupported, match=r"charger\.bay_3 does not support unlock") as err:
        await box.unlock()
    assert err.value.capability is Cap.UNLOCK
    with pytest.raises(NotSupported, match="limit_watts"):
        await box.set_limit(ChargingSchedule.constant(11_000, "W"))
    with pytest.raises(NotSupported, match="phase_switch"):
        await box.set_limit(ChargingSchedule.constant(16, "A", phases=1))
    for call in (box.reset(), box.set_available(False)):
        with pytest.raises(NotSupported):
            await call


async def test_when_a_capability_is_declared_but_not_implemented_then_not_supported(
    hub: Hub,
) -> None:
    liar = await _added(hub, Liar("liar"))

    assert liar.supports(Cap.RESET)
    with pytest.raises(NotSupported, match="reset"):
        await liar.reset(hard=True)


async def test_when_a_limit_is_set_then_the_limit_and_its_reason_are_shown(hub: Hub) -> None:
    box = await _added(hub, Wallbox("bay-4"))
    schedule = ChargingSchedule(
        (SchedulePeriod(timedelta(0), 16.0, 3), SchedulePeriod(timedelta(hours=1), 32.0, 3)),
        RateUnit.AMPS,
        start=hub.now(),
    )

    result = await box.set_limit(schedule)

    assert result and result.detail == "written to register 1000"
    attrs = hub.states.get(box.entity_id).attributes  # type: ignore[union-attr]
    assert attrs["limit"] == {
        "value": 16.0,
        "unit": "A",
        "phases": 3,
        "until": (hub.now() + timedelta(hours=1)).isoformat(),
    }
    assert attrs["limit_reason"] == "site.main L2 at limit"


async def test_when_started_and_stopped_then_the_charger_answers(hub: Hub) -> None:
    box = await _added(hub, Wallbox("bay-5"))

    assert await box.start("RFID-7")
    assert not await box.stop()
    assert box.commands == ["start RFID-7", "stop"]
    assert hub.states.get(box.entity_id).state == "charging"  # type: ignore[union-attr]


def test_a_schedule_gives_the_limit_in_force_at_each_moment(clock: SimClock) -> None:
    t0 = clock.now()
    schedule = ChargingSchedule.from_absolute(
        "W", [(t0 + timedelta(hours=2), 7_400.0, 1), (t0, 22_000.0, 3)]
    )

    assert schedule.start == t0
    assert schedule.limit_at(t0 - timedelta(seconds=1)) is None
    assert schedule.limit_at(t0) == ChargingLimit(
        22_000.0, RateUnit.WATTS, 3, t0 + timedelta(hours=2)
    )
    assert schedule.limit_at(t0 + timedelta(hours=5)) == ChargingLimit(7_400.0, RateUnit.WATTS, 1)
    relative = ChargingSchedule.constant(10)
    relative = ChargingSchedule(relative.periods, duration=timedelta(minutes=30))
    assert relative.limit_at(t0 + timedelta(minutes=10), applied_at=t0) is not None
    assert relative.limit_at(t0 + timedelta(minutes=30), applied_at=t0) is None


@pytest.mark.parametrize(
    "periods",
    [
        (),
        (SchedulePeriod(timedelta(minutes=5), 10.0),),
        (SchedulePeriod(timedelta(0), 10.0), SchedulePeriod(timedelta(0), 12.0)),
        (SchedulePeriod(timedelta(0), -1.0),),
        (SchedulePeriod(timedelta(0), 10.0, phases=4),),
    ],
)
def test_a_malformed_schedule_is_refused(periods: tuple[SchedulePeriod, ...]) -> None:
    with pytest.raises(ValueError):
        ChargingSchedule(periods)


def test_an_unknown_status_is_refused() -> None:
    assert ConnectorStatus("Suspended EVSE") is ConnectorStatus.SUSPENDED_EVSE
    with pytest.raises(ValueError):
        ConnectorStatus("Occupied")
