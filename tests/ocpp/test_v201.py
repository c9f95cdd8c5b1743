"""OCPP 2.0.1 scenarios against the hub over real loopback websockets, the `ocpp` library as the
charging station: boot and device model, sessions, remote operations, retries, offline replay."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result

from hub.charging.session import derive_energy
from hub.clock import SimClock
from hub.core import Hub
from hub.storage.sessions import SessionStore
from tests.ocpp.support import PASSWORD, charger, running_hub

OCPP = {"chargers": [{"id": "evse_201", "password": PASSWORD}]}
ALLOW = {"allowlist": {"tokens": [{"id": "04A1B2C3", "name": "van 17"}]}}
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
ENTITY = "charger.evse_201_1"
REGISTER = "Energy.Active.Import.Register"
CARD = {"idToken": "04A1B2C3", "type": "ISO14443"}
UNKNOWN_CARD = {"idToken": "DEADBEEF", "type": "ISO14443"}
REPORT: list[list[dict[str, Any]]] = [
    [
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
         "variableAttribute": [{"value": "22000"}],
         "variableCharacteristics": {"unit": "W", "dataType": "decimal", "maxLimit": 22000,
                                     "supportsMonitoring": False}},
        {"component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
         "variable": {"name": "ConnectorType"}, "variableAttribute": [{"value": "cType2"}]},
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"},
         "variableAttribute": [{"value": "W"}]},
    ],
    [
        {"component": {"name": "EVSE", "evse": {"id": 2}},
         "variable": {"name": "AvailabilityState"}, "variableAttribute": [{"value": "Available"}]},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
         "variableAttribute": [{"value": "300"}, {"type": "MaxSet", "value": "3600"}]},
    ],
]  # fmt: skip


def ts(clock: SimClock, minutes: float = 0) -> str:
    return (clock.now() + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def meter(when: str, wh: float, context: str | None = None, **more: float) -> list[dict[str, Any]]:
    """One meterValue: the energy register in Wh (plus e.g. Power_Active_Import=11000 in W)."""
    samples = [{"value": wh, "measurand": REGISTER, "unitOfMeasure": {"unit": "Wh"},
                **({"context": context} if context else {})}]  # fmt: skip
    samples += [{"value": v, "measurand": k.replace("_", "."), "unitOfMeasure": {"unit": "W"}}
                for k, v in more.items()]  # fmt: skip
    return [{"timestamp": when, "sampledValue": samples}]


def event(
    kind: str,
    seq: int,
    when: str,
    tx: str = "TX-1",
    *,
    trigger: str = "MeterValuePeriodic",
    state: str | None = None,
    token: dict[str, str] | None = None,
    values: list[dict[str, Any]] | None = None,
    offline: bool | None = None,
    **info: Any,
) -> call.TransactionEvent:
    info = {"transactionId": tx, **info, **({"chargingState": state} if state else {})}
    return call.TransactionEvent(
        event_type=kind, timestamp=when, trigger_reason=trigger, seq_no=seq,
        transaction_info=info, meter_value=values, offline=offline,
        evse={"id": 1, "connectorId": 1}, id_token=token,
    )  # fmt: skip


def collect(hub: Hub, event_type: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    hub.bus.listen(event_type, lambda e: seen.append(dict(e.data)))
    return seen


def boot() -> call.BootNotification:
    station = {"model": "W22", "vendorName": "ACME", "serialNumber": "S-1", "firmwareVersion": "2"}
    return call.BootNotification(charging_station=station, reason="PowerUp")


def status(state: str, evse: int = 1) -> call.StatusNotification:
    return call.StatusNotification(
        timestamp="2026-03-02T07:00:00Z", connector_status=state, evse_id=evse, connector_id=1
    )


class Station(ChargePoint):
    """A charging station that answers the hub's requests (as `replies` says) and keeps them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: defaultdict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self.replies = {"UnlockConnector": "Unlocked", "Reset": "Accepted"}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def request(self, action: str) -> dict[str, Any]:
        return await asyncio.wait_for(self.requests[action].get(), 10)

    def _got(self, action: str, kwargs: dict[str, Any]) -> None:
        self.requests[action].put_nowait(kwargs)

    @on("GetBaseReport")
    def get_base_report(self, **kw: Any) -> call_result.GetBaseReport:
        self._got("GetBaseReport", kw)
        return call_result.GetBaseReport(status="Accepted")

    @after("GetBaseReport")
    def report(self, request_id: int, **kw: Any) -> None:
        # Never awaited here: the library reads no answer while a handler runs.
        task = asyncio.create_task(self._send_report(request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_report(self, request_id: int) -> None:
        for seq, part in enumerate(REPORT):
            await self.call(call.NotifyReport(
                request_id=request_id, generated_at="2026-03-02T07:00:00Z", seq_no=seq,
                report_data=part, tbc=seq < len(REPORT) - 1,
            ))  # fmt: skip

    @on("SetChargingProfile")
    def set_profile(self, **kw: Any) -> call_result.SetChargingProfile:
        self._got("SetChargingProfile", kw)
        return call_result.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    def clear_profile(self, **kw: Any) -> call_result.ClearChargingProfile:
        self._got("ClearChargingProfile", kw)
        return call_result.ClearChargingProfile(status="Accepted")

    @on("RequestStartTransaction")
    def remote_start(self, **kw: Any) -> call_result.RequestStartTransaction:
        self._got("RequestStartTransaction", kw)
        return call_result.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    def remote_stop(self, **kw: Any) -> call_result.RequestStopTransaction:
        self._got("RequestStopTransaction", kw)
        return call_result.RequestStopTransaction(status="Accepted")

    @on("UnlockConnector")
    def unlock(self, **kw: Any) -> call_result.UnlockConnector:
        self._got("UnlockConnector", kw)
        return call_result.UnlockConnector(status=self.replies["UnlockConnector"])

    @on("Reset")
    def reset(self, **kw: Any) -> call_result.Reset:
        self._got("Reset", kw)
        return call_result.Reset(status=self.replies["Reset"])

    @on("ChangeAvailability")
    def change_availability(self, **kw: Any) -> call_result.ChangeAvailability:
        self._got("ChangeAvailability", kw)
        return call_result.ChangeAvailability(status="Scheduled")

    @on("CostUpdated")
    def cost_updated(self, **kw: Any) -> call_result.CostUpdated:
        self._got("CostUpdated", kw)
        if self.replies.get("CostUpdated") == "InternalError":
            raise RuntimeError("display broken")
        return call_result.CostUpdated()

    @on("SetVariables")
    def set_variables(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        results = [{"attribute_status": "Accepted", "component": d["component"],
                    "variable": d["variable"]} for d in set_variable_data]  # fmt: skip
        return call_result.SetVariables(set_variable_result=results)

    @on("GetVariables")
    def get_variables(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        results = [{"attribute_status": "Accepted", "attribute_value": "120",
                    "component": d["component"], "variable": d["variable"]}
                   for d in get_variable_data]  # fmt: skip
        return call_result.GetVariables(get_variable_result=results)


async def booted(hub: Hub, cp: Station) -> None:
    """Boot and wait until the device model the hub asks for has arrived."""
    done = asyncio.Event()
    hub.bus.listen("ocpp_report", lambda e: done.set())
    assert (await cp.call(boot())).status == "Accepted"
    await asyncio.wait_for(done.wait(), 10)


async def test_cold_boot_reads_the_device_model(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        answer = await cp.call(boot())
        assert (answer.status, answer.interval) == ("Accepted", 300)
        assert answer.current_time == "2026-03-02T07:00:00Z"
        asked = await cp.request("GetBaseReport")
        assert asked["report_base"] == "FullInventory"
        done = asyncio.Event()
        hub.bus.listen("ocpp_report", lambda e: done.set())
        await asyncio.wait_for(done.wait(), 10)

        station = hub.data["ocpp"].stations["evse_201"]
        assert station.configuration["SmartChargingCtrlr/RateUnit"] == "W"
        assert station.configuration["OCPPCommCtrlr/HeartbeatInterval:MaxSet"] == "3600"
        assert station.configuration["Connector@1.1/ConnectorType"] == "cType2"
        assert station.rate_units == ("W",)
        first, second = hub.states.get(ENTITY), hub.states.get("charger.evse_201_2")
        assert first is not None and second is not None
        assert first.attributes["vendor"] == "ACME" and first.attributes["serial"] == "S-1"
        assert first.attributes["max_power_w"] == 22000.0

        heartbeat = await cp.call(call.Heartbeat())
        assert heartbeat.current_time == "2026-03-02T07:00:00Z"
        await cp.call(status("Available"))
        assert hub.states.get(ENTITY).state == "available"

        # The station takes only W: a limit in A is sent as W at 230 V on three phases.
        result = await hub.services.call("charger", "set_limit", {"entity_id": ENTITY, "limit": 16})
        assert result == {"accepted": True, "detail": "Accepted"}
        sent = await cp.request("SetChargingProfile")
        profile = sent["charging_profile"]
        assert sent["evse_id"] == 1 and profile["id"] == 1001
        assert profile["charging_profile_purpose"] == "TxDefaultProfile"
        schedule = profile["charging_schedule"][0]
        assert schedule["charging_rate_unit"] == "W"
        assert schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 11040.0}]


async def test_a_pending_station_gets_pending_and_no_report_request(tmp_path: Path) -> None:
    async with (
        running_hub(tmp_path, {"allow_pending": True}, SimClock(start=T0)) as hub,
        charger(hub, "newcomer", Station, protocol="ocpp2.0.1", password=None) as cp,
    ):
        answer = await cp.call(boot())
        assert (answer.status, answer.interval) == ("Pending", 60)
        await hub.block_till_done()
        assert cp.requests["GetBaseReport"].empty()


async def test_regular_session_with_central_authorization(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        await booted(hub, cp)
        known = await cp.call(call.Authorize(id_token={"idToken": "04a1b2c3", "type": "ISO14443"}))
        assert known.id_token_info["status"] == "Accepted"
        unknown = await cp.call(call.Authorize(id_token=UNKNOWN_CARD))
        assert unknown.id_token_info["status"] == "Invalid"

        await cp.call(status("Occupied"))
        assert hub.states.get(ENTITY).state == "preparing"
        started = await cp.call(event(
            "Started", 0, ts(clock), trigger="CablePluggedIn", state="EVConnected",
            values=meter(ts(clock), 1_000_000, "Transaction.Begin"),
        ))  # fmt: skip
        assert started.id_token_info is None
        authorized = await cp.call(
            event("Updated", 1, ts(clock, 1), trigger="Authorized", state="Charging", token=CARD)
        )
        assert authorized.id_token_info["status"] == "Accepted"
        state = hub.states.get(ENTITY)
        assert state.state == "charging" and state.attributes["id_tag"] == "04A1B2C3"
        for seq, (minute, wh) in enumerate(((15, 1_002_750), (30, 1_005_500)), start=2):
            await cp.call(
                event(
                    "Updated",
                    seq,
                    ts(clock, minute),
                    values=meter(ts(clock, minute), wh, Power_Active_Import=11000),
                )
            )
        state = hub.states.get(ENTITY)
        assert state.attributes["power_w"] == 11_000.0
        assert state.attributes["energy_wh"] == 1_005_500.0

        ended = await cp.call(event(
            "Ended", 4, ts(clock, 45), trigger="EVDeparted", stoppedReason="EVDisconnected",
            values=meter(ts(clock, 45), 1_008_250, "Transaction.End"),
        ))  # fmt: skip
        assert ended.id_token_info is None
        assert hub.states.get(ENTITY).state == "finishing"
        await cp.call(status("Available"))
        assert hub.states.get(ENTITY).state == "available"

        store = SessionStore(hub.recorder)
        session = await store.find("evse_201", "TX-1")
        assert session is not None and session.status == "completed"
        assert (session.id_tag, session.id_tag_type) == ("04A1B2C3", "ISO14443")
        assert (session.meter_start_wh, session.meter_stop_wh) == (1_000_000, 1_008_250)
        assert session.stop_reason == "EVDisconnected"
        assert derive_energy(session, await store.readings(session.id)).energy_wh == 8_250.0


async def test_an_unknown_token_at_start_is_refused_but_the_session_is_recorded(
    tmp_path: Path,
) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        answer = await cp.call(
            event(
                "Started",
                0,
                ts(clock),
                trigger="Authorized",
                token=UNKNOWN_CARD,
                state="EVConnected",
            )
        )
        assert answer.id_token_info["status"] == "Invalid"
        session = await SessionStore(hub.recorder).find("evse_201", "TX-1")
        assert session is not None and session.data["authorization"] == "Invalid"
        assert hub.states.get(ENTITY).attributes["id_tag"] is None


async def test_remote_start_and_remote_stop(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        await booted(hub, cp)
        await cp.call(status("Occupied"))
        result = await hub.services.call("charger", "start", {"entity_id": ENTITY})
        assert result == {"accepted": True, "detail": "Accepted"}
        asked = await cp.request("RequestStartTransaction")
        assert asked["evse_id"] == 1 and asked["id_token"] == {
            "id_token": "EVHUB",
            "type": "Central",
        }
        # The hub's own token comes back on the transaction and is accepted; another is not.
        stranger = await cp.call(call.Authorize(id_token={"idToken": "X1", "type": "Central"}))
        assert stranger.id_token_info["status"] == "Invalid"
        started = await cp.call(event(
            "Started", 0, ts(clock), "TX-R", trigger="RemoteStart", state="Charging",
            token={"idToken": "EVHUB", "type": "Central"}, remoteStartId=asked["remote_start_id"],
        ))  # fmt: skip
        assert started.id_token_info["status"] == "Accepted"
        session = await SessionStore(hub.recorder).find("evse_201", "TX-R")
        assert session.data["remote_start_id"] == asked["remote_start_id"]
        hub_token = {"idToken": "EVHUB", "type": "Central"}
        later = await cp.call(event("Updated", 1, ts(clock, 1), "TX-R", token=hub_token))
        assert later.id_token_info["status"] == "Accepted"  # for the whole session it started

        result = await hub.services.call("charger", "stop", {"entity_id": ENTITY})
        assert result == {"accepted": True, "detail": "Accepted"}
        assert (await cp.request("RequestStopTransaction"))["transaction_id"] == "TX-R"
        await cp.call(event("Ended", 2, ts(clock, 5), "TX-R", trigger="RemoteStop",
                            stoppedReason="Remote"))  # fmt: skip
        again = await hub.services.call("charger", "stop", {"entity_id": ENTITY})
        assert again == {"accepted": False, "detail": "no transaction on this connector"}


async def test_an_offline_transaction_is_replayed_with_its_own_timestamps(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        await booted(hub, cp)
        await cp.call(status("Available"))
        # This station's meter counts from 0 in each transaction.
        for kind, seq, minutes, wh in (("Started", 0, -180, 0), ("Updated", 1, -120, 7_000),
                                       ("Ended", 2, -60, 11_000)):  # fmt: skip
            answer = await cp.call(event(
                kind, seq, ts(clock, minutes), token=CARD if seq == 0 else None,
                values=meter(ts(clock, minutes), wh), offline=True,
            ))  # fmt: skip
            assert answer.id_token_info == ({"status": "Accepted"} if seq == 0 else None)
        store = SessionStore(hub.recorder)
        session = await store.find("evse_201", "TX-1")
        assert session.started_at == T0 - timedelta(hours=3)
        assert session.stopped_at == T0 - timedelta(hours=1)
        assert session.data["offline"] is True
        readings = await store.readings(session.id)
        assert [r.timestamp for r in readings] == [T0 - timedelta(hours=h) for h in (3, 2, 1)]
        assert derive_energy(session, readings).energy_wh == 11_000.0
        state = hub.states.get(ENTITY)  # history, not the present: the entity is untouched
        assert state.state == "available" and state.attributes["session_id"] is None
        assert state.attributes["energy_wh"] is None


async def test_a_retried_transaction_event_gets_the_same_answer_and_writes_nothing(
    tmp_path: Path,
) -> None:
    clock = SimClock(start=T0)
    started_events = []
    start = event("Started", 0, ts(clock), token=CARD, values=meter(ts(clock), 500))
    update = event("Updated", 1, ts(clock, 10), values=meter(ts(clock, 10), 2_500))
    async with running_hub(tmp_path, OCPP, clock, **ALLOW) as hub:
        started_events = collect(hub, "session_started")
        async with charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp:
            first = await cp.call(start)
            assert await cp.call(start) == first
            await cp.call(update)
            await cp.call(update)
        async with charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp:
            # The answer was lost with the connection: the station sends it again.
            assert await cp.call(start) == first
            await cp.call(update)
        store = SessionStore(hub.recorder)
        sessions = await store.list(charger_id="evse_201")
        assert len(sessions) == 1 and len(started_events) == 1
        assert len(await store.readings(sessions[0].id)) == 2
    # Even a hub restart forgets nothing: the retried event adds no readings.
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        assert await cp.call(start) == first
        await cp.call(update)
        store = SessionStore(hub.recorder)
        sessions = await store.list(charger_id="evse_201")
        assert len(sessions) == 1
        assert len(await store.readings(sessions[0].id)) == 2


async def test_a_seqno_gap_is_flagged_and_a_lost_start_still_records(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        gaps, lost = collect(hub, "ocpp_seqno_gap"), collect(hub, "ocpp_transaction_start_missing")
        await cp.call(event("Started", 0, ts(clock)))
        await cp.call(event("Updated", 3, ts(clock, 3)))
        assert [(g["last"], g["received"], g["missing"]) for g in gaps] == [(0, 3, [1, 2])]
        await cp.call(event("Updated", 1, ts(clock, 1), offline=True))  # late, fills the gap
        assert len(gaps) == 1

        # Started and four more events were lost: the fifth one starts the session.
        answer = await cp.call(event("Updated", 5, ts(clock, 20), "TX-LOST",
                                     values=meter(ts(clock, 19), 40_000)))  # fmt: skip
        assert answer.id_token_info is None
        assert gaps[-1]["missing"] == [0, 1, 2, 3, 4] and lost[0]["transaction_id"] == "TX-LOST"
        session = await SessionStore(hub.recorder).find("evse_201", "TX-LOST")
        assert session.started_at == T0 + timedelta(minutes=19)
        assert session.data["start_event_missing"] is True


async def test_ev_charging_needs_and_schedule_are_captured(tmp_path: Path) -> None:
    async with (
        running_hub(tmp_path, OCPP, SimClock(start=T0), **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        needs_events = collect(hub, "ocpp_ev_charging_needs")
        schedules = collect(hub, "ocpp_ev_charging_schedule")
        await cp.call(status("Occupied"))
        needs = {"requestedEnergyTransfer": "AC_three_phase",
                 "departureTime": "2026-03-02T15:00:00Z",
                 "acChargingParameters": {"energyAmount": 30_000, "evMinCurrent": 6,
                                          "evMaxCurrent": 32, "evMaxVoltage": 400}}  # fmt: skip
        answer = await cp.call(call.NotifyEVChargingNeeds(charging_needs=needs, evse_id=1))
        assert answer.status == "Accepted"
        station = hub.data["ocpp"].stations["evse_201"]
        assert station.ev_needs[1]["acChargingParameters"]["energyAmount"] == 30_000
        assert needs_events[0]["entity_id"] == ENTITY and needs_events[0]["evse"] == 1
        assert hub.states.get(ENTITY).attributes["ev_needs"]["departureTime"] == (
            "2026-03-02T15:00:00Z"
        )
        # ...and as the neutral fields the smart-charging engine plans with: 400 V is taken as
        # line-to-line, so 32 A on three phases of 230.9 V
        attributes = hub.states.get(ENTITY).attributes
        assert attributes["ev_energy_wh"] == 30_000
        assert attributes["ev_departure"] == "2026-03-02T15:00:00+00:00"
        assert attributes["ev_max_power_w"] == pytest.approx(32 * 400 / 3**0.5 * 3)
        dc = {"requestedEnergyTransfer": "DC",
              "dcChargingParameters": {"evMaxCurrent": 200, "evMaxVoltage": 800,
                                       "evMaxPower": 150_000, "stateOfCharge": 35,
                                       "evEnergyCapacity": 80_000, "fullSoC": 90}}  # fmt: skip
        await cp.call(call.NotifyEVChargingNeeds(charging_needs=dc, evse_id=1))
        attributes = hub.states.get(ENTITY).attributes
        assert attributes["ev_energy_wh"] == pytest.approx(44_000)  # (90 - 35) % of 80 kWh
        assert attributes["ev_max_power_w"] == 150_000 and attributes["soc"] == 35
        assert attributes["ev_departure"] is None
        plan = {"id": 1, "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}]}  # fmt: skip
        answer = await cp.call(call.NotifyEVChargingSchedule(
            time_base="2026-03-02T07:00:00Z", charging_schedule=plan, evse_id=1
        ))  # fmt: skip
        assert answer.status == "Accepted"
        assert schedules[0]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 11000


async def test_notifications_are_answered_and_reported(tmp_path: Path) -> None:
    now = "2026-03-02T07:00:00Z"
    component = {"name": "EVSE", "evse": {"id": 1}}
    messages = [
        (call.NotifyEvent(generated_at=now, seq_no=0, event_data=[{
            "eventId": 1, "timestamp": now, "trigger": "Alerting", "actualValue": "true",
            "techCode": "GroundFault", "component": component, "variable": {"name": "Problem"},
            "eventNotificationType": "HardWiredNotification"}]), "ocpp_notify_event"),
        (call.SecurityEventNotification(type="TamperDetectionActivated", timestamp=now),
         "ocpp_security_event"),
        (call.LogStatusNotification(status="Uploaded", request_id=7), "ocpp_log_status"),
        (call.FirmwareStatusNotification(status="Installed"), "ocpp_firmware_status"),
        (call.ReservationStatusUpdate(reservation_id=3, reservation_update_status="Expired"),
         "ocpp_reservation_status"),
        (call.NotifyChargingLimit(charging_limit={"chargingLimitSource": "SO"}, evse_id=1),
         "ocpp_charging_limit"),
        (call.ClearedChargingLimit(charging_limit_source="SO", evse_id=1),
         "ocpp_charging_limit_cleared"),
        (call.ReportChargingProfiles(request_id=5, charging_limit_source="CSO", evse_id=1,
            charging_profile=[{"id": 1001, "stackLevel": 1, "chargingProfilePurpose":
                "TxDefaultProfile", "chargingProfileKind": "Relative", "chargingSchedule": [
                {"id": 1, "chargingRateUnit": "A",
                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}]}]),
         "ocpp_charging_profiles"),
        (call.NotifyCustomerInformation(data="none", seq_no=0, generated_at=now, request_id=9),
         "ocpp_customer_information"),
        (call.NotifyDisplayMessages(request_id=4), "ocpp_display_messages"),
        (call.NotifyMonitoringReport(request_id=6, seq_no=0, generated_at=now),
         "ocpp_monitoring_report"),
    ]  # fmt: skip
    async with (
        running_hub(tmp_path, OCPP, SimClock(start=T0), **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        await cp.call(status("Available"))
        for message, event_type in messages:
            seen = collect(hub, event_type)
            await cp.call(message)
            assert len(seen) == 1 and seen[0]["charger_id"] == "evse_201", event_type
        assert hub.states.get(ENTITY).attributes["error_code"] == "GroundFault"
        transfer = await cp.call(call.DataTransfer(vendor_id="com.acme", message_id="x"))
        assert transfer.status == "UnknownVendorId"
        sample = meter(now, 12, Power_Active_Import=7)
        await cp.call(call.MeterValues(evse_id=1, meter_value=sample))
        assert hub.states.get(ENTITY).attributes["power_w"] == 7.0


async def test_commands_reach_the_station(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        await cp.call(status("Occupied"))
        target = {"entity_id": ENTITY}
        assert (await hub.services.call("charger", "unlock", target))["accepted"]
        assert await cp.request("UnlockConnector") == {"evse_id": 1, "connector_id": 1}
        cp.replies["UnlockConnector"] = "UnlockFailed"
        refused = await hub.services.call("charger", "unlock", target)
        assert refused == {"accepted": False, "detail": "UnlockFailed"}

        assert (await hub.services.call("charger", "reset", {**target, "hard": True}))["accepted"]
        assert (await cp.request("Reset"))["type"] == "Immediate"
        result = await hub.services.call("charger", "set_available", {**target, "available": False})
        assert result == {"accepted": True, "detail": "Scheduled"}
        asked = await cp.request("ChangeAvailability")
        assert asked == {"operational_status": "Inoperative", "evse": {"id": 1}}

        # During a transaction the limit is a TxProfile for it, in A as the station allows.
        await cp.call(event("Started", 0, ts(clock), state="Charging"))
        await hub.services.call("charger", "set_limit", {**target, "limit": 10, "unit": "A"})
        profile = (await cp.request("SetChargingProfile"))["charging_profile"]
        assert (profile["id"], profile["charging_profile_purpose"]) == (2001, "TxProfile")
        assert profile["transaction_id"] == "TX-1"
        assert profile["charging_schedule"][0]["charging_rate_unit"] == "A"
        assert hub.states.get(ENTITY).attributes["limit"]["value"] == 10

        adapter = hub.data["ocpp"].stations["evse_201"].commands
        assert await adapter.clear_limit(1)
        cleared = [(await cp.request("ClearChargingProfile"))["charging_profile_id"] for _ in "ab"]
        assert cleared == [1001, 2001]
        pair = ("OCPPCommCtrlr", "HeartbeatInterval")
        assert await adapter.set_variables({pair: "120"}) == {
            "OCPPCommCtrlr/HeartbeatInterval": "Accepted"
        }
        assert await adapter.get_variables([pair]) == {"OCPPCommCtrlr/HeartbeatInterval": "120"}
        configuration = hub.data["ocpp"].stations["evse_201"].configuration
        assert configuration["OCPPCommCtrlr/HeartbeatInterval"] == "120"


async def test_billing_cost_updates_reach_the_station_of_the_transaction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        await cp.call(event("Started", 0, ts(clock), state="Charging"))
        cost = {"charger_id": "evse_201", "connector": 1, "entity_id": ENTITY,
                "transaction_id": "TX-1", "session_id": 1, "total": "1.92",
                "currency": "EUR"}  # fmt: skip
        # Unknown transactions and stations are left alone; only the known one is sent.
        hub.bus.fire("billing_cost_updated", {**cost, "transaction_id": "TX-unknown"})
        hub.bus.fire("billing_cost_updated", {**cost, "charger_id": "nobody"})
        hub.bus.fire("billing_cost_updated", cost)
        assert await cp.request("CostUpdated") == {"total_cost": 1.92, "transaction_id": "TX-1"}
        await hub.block_till_done()
        assert cp.requests["CostUpdated"].empty()

        # A station that answers with an error is logged; the bus and the hub go on.
        cp.replies["CostUpdated"] = "InternalError"
        with caplog.at_level("WARNING"):
            hub.bus.fire("billing_cost_updated", {**cost, "total": "2.50"})
            assert (await cp.request("CostUpdated"))["total_cost"] == 2.5
            await hub.block_till_done()
        assert "CostUpdated for TX-1 failed" in caplog.text


async def test_an_event_whose_write_fails_is_refused_and_its_retry_recorded(
    tmp_path: Path,
) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Station, protocol="ocpp2.0.1") as cp,
    ):
        transactions = hub.data["ocpp"].transactions
        record = transactions.record

        async def disk_full(readings: Any) -> None:
            transactions.record = record  # fails once
            raise OSError("disk full")

        transactions.record = disk_full
        start = event("Started", 0, ts(clock), values=meter(ts(clock), 500))
        with pytest.raises(Exception, match="could not be processed"):
            await cp.call(start, suppress=False)
        assert await cp.call(start) is not None  # the station's retry
        store = SessionStore(hub.recorder)
        session = await store.find("evse_201", "TX-1")
        assert [r.value for r in await store.readings(session.id)] == [500.0]


async def test_a_station_that_never_answers_times_out_on_the_hub_clock(tmp_path: Path) -> None:
    asked, never = asyncio.Event(), asyncio.Event()

    class Silent(Station):
        @on("UnlockConnector")
        async def unlock(self, **kw: Any) -> Any:
            asked.set()
            await never.wait()

    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "evse_201", Silent, protocol="ocpp2.0.1") as cp,
    ):
        await cp.call(status("Available"))
        pending = asyncio.create_task(hub.services.call("charger", "unlock", {"entity_id": ENTITY}))
        await asyncio.wait_for(asked.wait(), 10)
        await clock.advance(31)
        with pytest.raises(TimeoutError, match="did not answer UnlockConnector within 30 s"):
            await asyncio.wait_for(pending, 10)
