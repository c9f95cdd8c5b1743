"""OCPP 1.6J scenarios against the hub over real loopback websockets, the `ocpp` library as
the charge point: cold boot, a regular session with central authorization, remote stop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ocpp.v16 import call
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus

from hub.charging.session import derive_energy
from hub.clock import SimClock
from hub.storage.sessions import SessionStore
from tests.ocpp.support import PASSWORD, charger, running_hub

OCPP = {"chargers": [{"id": "bay_01", "password": PASSWORD}]}
ALLOW = {"allowlist": {"tokens": [{"id": "04A1B2C3", "name": "van 17"}]}}


def ts(clock: SimClock, minutes: float = 0) -> str:
    return (clock.now() + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def test_cold_boot_session_with_meter_values_and_stop(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    async with running_hub(tmp_path, OCPP, clock, **ALLOW) as hub, charger(hub, "bay_01") as cp:
        boot = await cp.call(
            call.BootNotification(charge_point_vendor="ACME", charge_point_model="W22")
        )
        assert boot.status == RegistrationStatus.accepted
        assert boot.interval == 300
        await cp.call(call.StatusNotification(1, "NoError", "Preparing"))
        state = hub.states.get("charger.bay_01_1")
        assert state is not None and state.state == "preparing"
        assert state.attributes["vendor"] == "ACME"

        auth = await cp.call(call.Authorize("04a1b2c3"))
        assert auth.id_tag_info["status"] == AuthorizationStatus.accepted
        unknown = await cp.call(call.Authorize("DEADBEEF"))
        assert unknown.id_tag_info["status"] == AuthorizationStatus.invalid

        start = await cp.call(call.StartTransaction(1, "04A1B2C3", 1_000_000, ts(clock)))
        assert start.id_tag_info["status"] == AuthorizationStatus.accepted
        tx = start.transaction_id
        assert 0 < tx < 2**31
        await cp.call(call.StatusNotification(1, "NoError", "Charging"))
        for minute, register in ((15, 1_002_750), (30, 1_005_500)):
            await cp.call(
                call.MeterValues(
                    1,
                    [{"timestamp": ts(clock, minute), "sampledValue": [
                        {"value": str(register), "measurand": "Energy.Active.Import.Register",
                         "unit": "Wh"},
                        {"value": "11.0", "measurand": "Power.Active.Import", "unit": "kW"},
                        {"value": "16.0", "measurand": "Current.Import", "phase": "L1",
                         "unit": "A"},
                    ]}],
                    transaction_id=tx,
                )
            )  # fmt: skip
        state = hub.states.get("charger.bay_01_1")
        assert state.state == "charging"
        assert state.attributes["power_w"] == 11_000.0
        assert state.attributes["energy_wh"] == 1_005_500.0

        stop = await cp.call(call.StopTransaction(1_008_250, ts(clock, 45), tx, id_tag="04A1B2C3"))
        assert stop.id_tag_info["status"] == AuthorizationStatus.accepted

        store = SessionStore(hub.recorder)
        session = await store.find("bay_01", str(tx))
        assert session is not None and session.status == "completed"
        readings = await store.readings(session.id)
        assert derive_energy(session, readings).energy_wh == 8_250.0


async def test_a_retried_start_gets_the_same_transaction(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    async with running_hub(tmp_path, OCPP, clock, **ALLOW) as hub, charger(hub, "bay_01") as cp:
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))
        request = call.StartTransaction(1, "04A1B2C3", 500, ts(clock))
        first = await cp.call(request)
        again = await cp.call(request)
        assert first.transaction_id == again.transaction_id
        sessions = await SessionStore(hub.recorder).list(charger_id="bay_01")
        assert len(sessions) == 1


async def test_remote_stop_through_the_charger_service(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    stopped = asyncio.Event()

    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call_result

    class Charger(ChargePoint):
        @on("RemoteStopTransaction")
        def remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
            self.stop_requested = transaction_id
            stopped.set()
            return call_result.RemoteStopTransaction("Accepted")

    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "bay_01", Charger) as cp,
    ):
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))
        await cp.call(call.StatusNotification(1, "NoError", "Charging"))
        start = await cp.call(call.StartTransaction(1, "04A1B2C3", 500, ts(clock)))
        result = await hub.services.call("charger", "stop", {"entity_id": "charger.bay_01_1"})
        assert result == {"accepted": True, "detail": "Accepted"}
        await asyncio.wait_for(stopped.wait(), 5)
        assert cp.stop_requested == start.transaction_id


async def test_a_retried_stop_records_nothing_twice(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    async with running_hub(tmp_path, OCPP, clock, **ALLOW) as hub, charger(hub, "bay_01") as cp:
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))
        start = await cp.call(call.StartTransaction(1, "04A1B2C3", 100, ts(clock)))
        data = [{"timestamp": ts(clock, 10), "sampledValue": [{"value": "600"}]}]
        stop = call.StopTransaction(
            1100, ts(clock, 20), start.transaction_id, transaction_data=data
        )
        await cp.call(stop)
        await cp.call(stop)
        store = SessionStore(hub.recorder)
        session = await store.find("bay_01", str(start.transaction_id))
        assert len(await store.readings(session.id)) == 1
        assert session.stopped_at == clock.now() + timedelta(minutes=20)


async def test_offline_transaction_replayed_later_keeps_its_own_times(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    async with running_hub(tmp_path, OCPP, clock, **ALLOW) as hub, charger(hub, "bay_01") as cp:
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))
        # queued while the charger was offline three hours ago, sent now in order
        start = await cp.call(call.StartTransaction(1, "04A1B2C3", 0, ts(clock, -180)))
        await cp.call(
            call.MeterValues(
                1, [{"timestamp": ts(clock, -150), "sampledValue": [{"value": "5000"}]}],
                transaction_id=start.transaction_id,
            )
        )  # fmt: skip
        await cp.call(call.StopTransaction(9000, ts(clock, -120), start.transaction_id))
        store = SessionStore(hub.recorder)
        session = await store.find("bay_01", str(start.transaction_id))
        assert session.started_at == clock.now() - timedelta(minutes=180)
        assert session.stopped_at == clock.now() - timedelta(minutes=120)
        assert derive_energy(session, await store.readings(session.id)).energy_wh == 9000.0


async def test_a_charger_that_never_answers_gives_a_timeout_not_a_hang(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    from ocpp.v16 import ChargePoint

    answered = asyncio.Event()

    class Mute(ChargePoint):
        async def route_message(self, raw_msg: str) -> None:
            if '"UnlockConnector"' in raw_msg:
                answered.set()  # received, and never answered
                return
            await super().route_message(raw_msg)

    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "bay_01", Mute) as cp,
    ):
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))
        await cp.call(call.StatusNotification(1, "NoError", "Available"))
        pending = asyncio.create_task(
            hub.services.call("charger", "unlock", {"entity_id": "charger.bay_01_1"})
        )
        await asyncio.wait_for(answered.wait(), 5)
        await clock.advance(31)
        with pytest.raises(TimeoutError, match="did not answer UnlockConnector within 30 s"):
            await asyncio.wait_for(pending, 5)
        # and the connection still works
        assert (await cp.call(call.Heartbeat())).current_time


async def test_remote_start_without_a_tag_is_accepted_for_that_start_only(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call_result

    asked: asyncio.Queue[str] = asyncio.Queue()

    class Charger(ChargePoint):
        @on("RemoteStartTransaction")
        def remote_start(self, id_tag: str, **_: object) -> call_result.RemoteStartTransaction:
            asked.put_nowait(id_tag)
            return call_result.RemoteStartTransaction("Accepted")

    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "bay_01", Charger) as cp,
    ):
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))
        await cp.call(call.StatusNotification(1, "NoError", "Preparing"))
        result = await hub.services.call("charger", "start", {"entity_id": "charger.bay_01_1"})
        assert result["accepted"]
        tag = await asyncio.wait_for(asked.get(), 5)
        assert tag.startswith("HUB") and len(tag) <= 20
        start = await cp.call(call.StartTransaction(1, tag, 0, ts(clock)))
        assert start.id_tag_info["status"] == AuthorizationStatus.accepted
        # the hub's tag is no master key: after its time it is an unknown tag again
        await clock.advance(11 * 60)
        later = await cp.call(call.Authorize(tag))
        assert later.id_tag_info["status"] == AuthorizationStatus.invalid
