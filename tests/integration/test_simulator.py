"""Simulated chargers as real OCPP clients, against a minimal CSMS built here on the `ocpp` library.

The hub's own OCPP server is tested elsewhere; this CSMS records what arrives and answers plainly.
Time is a SimClock: the test advances it and waits for messages, never for wall-clock time.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

import plugins.simulator as simulator_plugin
from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import PluginHost
from plugins.simulator.charger import ChargerSpec, SimCharger
from plugins.simulator.meter import iso
from plugins.simulator.physics import Vehicle
from plugins.simulator.site import SimulatedSite
from plugins.simulator.vehicles import ArrivalConfig
from tests.conftest import SIM_START

ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0  # generous: real sockets on a loaded CI machine


# --- a minimal CSMS ---------------------------------------------------------------------------


@dataclass
class Msg:
    charger: str
    action: str
    payload: dict[str, Any]


class _ServerConnection:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: str) -> None:
        await self.ws.send_str(message)

    async def recv(self) -> str:
        msg = await self.ws.receive()
        if msg.type is WSMsgType.TEXT:
            return str(msg.data)
        raise ConnectionError("closed")


class Csms16(Cp16):
    csms: MiniCsms

    @on("BootNotification")
    def _boot(self, **kw: Any) -> Any:
        status, interval = self.csms.record(self.id, "BootNotification", kw)
        return result16.BootNotification(iso(SIM_START), interval, status)

    @on("Heartbeat")
    def _heartbeat(self, **kw: Any) -> Any:
        self.csms.record(self.id, "Heartbeat", kw)
        return result16.Heartbeat(iso(SIM_START))

    @on("StatusNotification")
    def _status(self, **kw: Any) -> Any:
        self.csms.record(self.id, "StatusNotification", kw)
        return result16.StatusNotification()

    @on("Authorize")
    def _authorize(self, id_tag: str, **kw: Any) -> Any:
        self.csms.record(self.id, "Authorize", {"id_tag": id_tag})
        return result16.Authorize({"status": self.csms.tag_status(id_tag)})

    @on("StartTransaction")
    def _start(self, **kw: Any) -> Any:
        self.csms.record(self.id, "StartTransaction", kw)
        status = self.csms.tag_status(kw["id_tag"])
        return result16.StartTransaction(next(self.csms.tx_ids), {"status": status})

    @on("MeterValues")
    def _meter(self, **kw: Any) -> Any:
        self.csms.record(self.id, "MeterValues", kw)
        return result16.MeterValues()

    @on("StopTransaction")
    def _stop(self, **kw: Any) -> Any:
        self.csms.record(self.id, "StopTransaction", kw)
        return result16.StopTransaction()


class Csms201(Cp201):
    csms: MiniCsms

    @on("BootNotification")
    def _boot(self, **kw: Any) -> Any:
        status, interval = self.csms.record(self.id, "BootNotification", kw)
        return result201.BootNotification(iso(SIM_START), interval, status)

    @on("Heartbeat")
    def _heartbeat(self, **kw: Any) -> Any:
        self.csms.record(self.id, "Heartbeat", kw)
        return result201.Heartbeat(iso(SIM_START))

    @on("StatusNotification")
    def _status(self, **kw: Any) -> Any:
        self.csms.record(self.id, "StatusNotification", kw)
        return result201.StatusNotification()

    @on("Authorize")
    def _authorize(self, id_token: dict[str, Any], **kw: Any) -> Any:
        self.csms.record(self.id, "Authorize", {"id_token": id_token})
        return result201.Authorize({"status": self.csms.tag_status(id_token["id_token"])})

    @on("TransactionEvent")
    def _event(self, **kw: Any) -> Any:
        self.csms.record(self.id, "TransactionEvent", kw)
        token = kw.get("id_token")
        if token is None:
            return result201.TransactionEvent()
        return result201.TransactionEvent(
            id_token_info={"status": self.csms.tag_status(token["id_token"])}
        )

    @on("MeterValues")
    def _meter(self, **kw: Any) -> Any:
        self.csms.record(self.id, "MeterValues", kw)
        return result201.MeterValues()

    @on("NotifyReport")
    def _report(self, **kw: Any) -> Any:
        self.csms.record(self.id, "NotifyReport", kw)
        return result201.NotifyReport()


class MiniCsms:
    """Records every message; `next(action)` waits for the next one not yet taken."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.peers: dict[str, Any] = {}
        self.boot_answers: list[tuple[str, int]] = []  # queued answers, then Accepted/300
        self.refuse = False  # answer the websocket upgrade with 503
        self.rejected_tags: set[str] = set()
        self.tx_ids = itertools.count(100)
        self._cursors: dict[tuple[str | None, str], int] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def record(self, charger: str, action: str, payload: dict[str, Any]) -> tuple[str, int]:
        self.messages.append(Msg(charger, action, payload))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if action == "BootNotification" and self.boot_answers:
            return self.boot_answers.pop(0)
        return "Accepted", 300

    def tag_status(self, tag: str) -> str:
        return "Invalid" if tag in self.rejected_tags else "Accepted"

    async def next(
        self,
        action: str,
        charger: str | None = None,
        where: Callable[[dict[str, Any]], bool] = lambda p: True,
    ) -> dict[str, Any]:
        """The next `action` message (of `charger`) matching `where` not taken before."""
        key = (charger, action)

        async def find() -> dict[str, Any]:
            while True:
                changed = self._changed
                for i in range(self._cursors.get(key, 0), len(self.messages)):
                    msg = self.messages[i]
                    if (
                        msg.action == action
                        and charger in (None, msg.charger)
                        and where(msg.payload)
                    ):
                        self._cursors[key] = i + 1
                        return msg.payload
                self._cursors[key] = len(self.messages)
                await changed.wait()

        return await asyncio.wait_for(find(), WAIT)

    def index(self, action: str, where: Callable[[dict[str, Any]], bool] = lambda p: True) -> int:
        return next(
            i for i, m in enumerate(self.messages) if m.action == action and where(m.payload)
        )

    async def _handler(self, request: web.Request) -> web.StreamResponse:
        charger = request.match_info["charger"]
        if self.refuse:
            self.record(charger, "refused", {})
            return web.Response(status=503)
        ws = web.WebSocketResponse(protocols=("ocpp1.6", "ocpp2.0.1"))
        await ws.prepare(request)
        peer = (Csms201 if ws.ws_protocol == "ocpp2.0.1" else Csms16)(
            charger, _ServerConnection(ws)
        )
        peer.csms = self
        self.peers[charger] = peer
        auth = request.headers.get("Authorization")
        self.record(charger, "connect", {"protocol": ws.ws_protocol, "authorization": auth})
        try:
            await peer.start()
        except ConnectionError:
            pass
        finally:
            self.record(charger, "disconnect", {})
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ocpp/{charger}", self._handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/ocpp"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def csms() -> AsyncIterator[MiniCsms]:
    server = MiniCsms()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_site(csms: MiniCsms, clock: SimClock) -> AsyncIterator[Callable[..., SimulatedSite]]:
    sites: list[SimulatedSite] = []

    def make(*specs: ChargerSpec, **kw: Any) -> SimulatedSite:
        kw.setdefault("arrivals", ArrivalConfig(enabled=False))
        site = SimulatedSite(specs, clock=clock, url=csms.url, validate=True, **kw)
        sites.append(site)
        return site

    yield make
    for site in sites:
        await site.stop()
    # Every message the simulator sent passed its own schema check and got a CALLRESULT.
    assert [c.outbox.stats.errors for s in sites for c in s.chargers.values()] == [
        0 for s in sites for _ in s.chargers
    ]


async def started(
    make: Callable[..., SimulatedSite], csms: MiniCsms, spec: ChargerSpec
) -> SimCharger:
    """A running site with one charger that has booted; returns the charger."""
    site = make(spec)
    await site.start()
    await csms.next("BootNotification")
    return site.charger(spec.id)


def ev(tag: str | None = "04A1B2C3", soc: float = 20.0, target: float = 80.0) -> Vehicle:
    return Vehicle("EV-1", "Test EV", 60.0, soc, target, 16.0, 3, 50.0, id_tag=tag)


def sampled(meter_value: dict[str, Any], measurand: str, phase: str | None = None) -> float:
    for value in meter_value["sampled_value"]:
        if value["measurand"] == measurand and value.get("phase") == phase:
            return float(value["value"])
    raise KeyError(measurand)


ENERGY, POWER = "Energy.Active.Import.Register", "Power.Active.Import"


# --- scenarios --------------------------------------------------------------------------------


async def test_a_16_charger_boots_charges_a_vehicle_and_stops_when_it_leaves(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite], clock: SimClock
) -> None:
    charger = await started(make_site, csms, ChargerSpec("cp16", "1.6", connectors=2))
    boot = csms.messages[csms.index("BootNotification")].payload
    assert (boot["charge_point_vendor"], boot["charge_point_model"]) == ("evhub", "SimCharger")
    statuses = [await csms.next("StatusNotification") for _ in range(3)]
    assert [(s["connector_id"], s["status"]) for s in statuses] == [
        (0, "Available"),
        (1, "Available"),
        (2, "Available"),
    ]

    charger.plug_in(1, ev())
    assert (await csms.next("StatusNotification"))["status"] == "Preparing"
    assert (await csms.next("Authorize"))["id_tag"] == "04A1B2C3"
    start = await csms.next("StartTransaction")
    assert start["connector_id"] == 1 and start["timestamp"] == iso(SIM_START)
    assert start["meter_start"] > 100_000  # a register that has seen use, not 0
    assert (await csms.next("StatusNotification"))["status"] == "Charging"

    readings = []
    for _ in range(2):
        await clock.advance(60)
        values = await csms.next("MeterValues")
        assert values["transaction_id"] == 100
        readings.append(values["meter_value"][0])
    first, second = readings
    assert len(first["sampled_value"]) == 9
    assert sampled(first, "Current.Import", "L1") == pytest.approx(16.0)
    power = sampled(first, POWER)
    assert power == pytest.approx(16 * 3 * 230, rel=0.02)
    # The register grows by power x time, every interval.
    assert sampled(first, ENERGY) - start["meter_start"] == pytest.approx(power / 60, abs=1.5)
    assert sampled(second, ENERGY) - sampled(first, ENERGY) == pytest.approx(power / 60, abs=1.5)
    assert sampled(second, "SoC") > sampled(first, "SoC") > 20.0

    await clock.advance(30)
    charger.unplug(1)
    stop = await csms.next("StopTransaction")
    assert (stop["transaction_id"], stop["reason"]) == (100, "EVDisconnected")
    assert stop["timestamp"] == iso(SIM_START + timedelta(seconds=150))
    assert stop["meter_stop"] > sampled(second, ENERGY)
    assert [d["sampled_value"][0]["context"] for d in stop["transaction_data"]] == [
        "Transaction.Begin",
        "Transaction.End",
    ]
    assert (await csms.next("StatusNotification"))["status"] == "Finishing"
    assert (await csms.next("StatusNotification"))["status"] == "Available"


async def test_a_201_session_is_a_sequence_of_transaction_events(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite], clock: SimClock
) -> None:
    charger = await started(make_site, csms, ChargerSpec("cp201", "2.0.1", connectors=1))
    boot = csms.messages[csms.index("BootNotification")].payload
    assert boot["reason"] == "PowerUp" and boot["charging_station"]["vendor_name"] == "evhub"
    assert (await csms.next("StatusNotification"))["connector_status"] == "Available"

    charger.plug_in(1, ev(tag="04DEADBEEF"))
    assert (await csms.next("StatusNotification"))["connector_status"] == "Occupied"
    assert (await csms.next("Authorize"))["id_token"]["id_token"] == "04DEADBEEF"
    started_event = await csms.next("TransactionEvent")
    assert started_event["event_type"] == "Started"
    assert started_event["trigger_reason"] == "Authorized"
    assert started_event["id_token"] == {"id_token": "04DEADBEEF", "type": "ISO14443"}
    assert started_event["transaction_info"]["charging_state"] == "Charging"
    assert started_event["evse"] == {"id": 1, "connector_id": 1}
    tx_id = started_event["transaction_info"]["transaction_id"]

    updates = []
    for _ in range(2):
        await clock.advance(60)
        updates.append(await csms.next("TransactionEvent"))
    assert {u["trigger_reason"] for u in updates} == {"MeterValuePeriodic"}
    assert {u["transaction_info"]["transaction_id"] for u in updates} == {tx_id}
    assert len(updates[0]["meter_value"][0]["sampled_value"]) == 9

    charger.unplug(1)
    ended = await csms.next("TransactionEvent")
    assert ended["event_type"] == "Ended" and ended["trigger_reason"] == "EVDeparted"
    assert ended["transaction_info"]["stopped_reason"] == "EVDisconnected"
    assert ended["transaction_info"]["time_spent_charging"] == 120
    seq = [e["seq_no"] for e in (started_event, *updates, ended)]
    assert seq == [0, 1, 2, 3]
    assert (await csms.next("StatusNotification"))["connector_status"] == "Available"


async def test_a_10_a_charging_profile_limits_current_and_power(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite], clock: SimClock
) -> None:
    charger = await started(make_site, csms, ChargerSpec("cp-limit", "1.6", connectors=1))
    charger.plug_in(1, ev())
    await csms.next("StartTransaction")
    peer = csms.peers["cp-limit"]

    profile = {
        "charging_profile_id": 7,
        "stack_level": 0,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Relative",
        "transaction_id": 100,
        "charging_schedule": {
            "charging_rate_unit": "A",
            "charging_schedule_period": [{"start_period": 0, "limit": 10.0}],
        },
    }
    answer = await peer.call(call16.SetChargingProfile(1, profile))
    assert answer.status == "Accepted"
    await clock.advance(60)
    reading = (await csms.next("MeterValues"))["meter_value"][0]
    assert sampled(reading, "Current.Import", "L2") == pytest.approx(10.0)
    assert sampled(reading, POWER) == pytest.approx(10 * 230 * 3, rel=0.02)

    composite = await peer.call(call16.GetCompositeSchedule(1, 3600, "A"))
    assert composite.status == "Accepted"
    assert composite.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 10.0}
    ]

    # Below the 6 A minimum the vehicle may not charge: SuspendedEVSE.
    zero = {**profile, "charging_profile_id": 8, "stack_level": 1}
    zero["charging_schedule"] = {**profile["charging_schedule"]}
    zero["charging_schedule"]["charging_schedule_period"] = [{"start_period": 0, "limit": 0.0}]
    assert (await peer.call(call16.SetChargingProfile(1, zero))).status == "Accepted"
    await csms.next("StatusNotification", where=lambda p: p["status"] == "SuspendedEVSE")
    cleared = await peer.call(call16.ClearChargingProfile(id=8))
    assert cleared.status == "Accepted"
    assert (await csms.next("StatusNotification"))["status"] == "Charging"


async def test_a_201_station_limit_in_watts_is_shared_by_the_evse(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite], clock: SimClock
) -> None:
    charger = await started(make_site, csms, ChargerSpec("cs-watts", "2.0.1", connectors=1))
    charger.plug_in(1, ev())
    await csms.next("TransactionEvent")
    profile = {
        "id": 1,
        "stack_level": 0,
        "charging_profile_purpose": "ChargingStationMaxProfile",
        "charging_profile_kind": "Absolute",
        "charging_schedule": [
            {
                "id": 1,
                "start_schedule": iso(SIM_START),
                "charging_rate_unit": "W",
                "charging_schedule_period": [{"start_period": 0, "limit": 7360.0}],
            }
        ],
    }
    answer = await csms.peers["cs-watts"].call(call201.SetChargingProfile(0, profile))
    assert answer.status == "Accepted"
    await clock.advance(60)
    update = await csms.next("TransactionEvent")
    assert sampled(update["meter_value"][0], POWER) == pytest.approx(7360, rel=0.02)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_remote_start_and_stop(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite], version: str
) -> None:
    await started(make_site, csms, ChargerSpec("remote", version, connectors=2))
    peer = csms.peers["remote"]
    if version == "1.6":
        assert (await peer.call(call16.RemoteStartTransaction("APPUSER1", 2))).status == "Accepted"
        start = await csms.next("StartTransaction")
        assert (start["connector_id"], start["id_tag"]) == (2, "APPUSER1")
        answer = await peer.call(call16.RemoteStopTransaction(100))
        assert answer.status == "Accepted"
        assert (await csms.next("StopTransaction"))["reason"] == "Remote"
        assert (await peer.call(call16.RemoteStopTransaction(100))).status == "Rejected"
        return
    token = {"id_token": "APPUSER1", "type": "Central"}
    answer = await peer.call(call201.RequestStartTransaction(token, 42, evse_id=2))
    assert answer.status == "Accepted"
    event = await csms.next("TransactionEvent")
    assert (event["trigger_reason"], event["evse"]["id"]) == ("RemoteStart", 2)
    assert event["transaction_info"]["remote_start_id"] == 42
    assert event["id_token"] == token
    tx_id = event["transaction_info"]["transaction_id"]
    answer = await peer.call(call201.RequestStopTransaction(tx_id))
    assert answer.status == "Accepted"
    ended = await csms.next("TransactionEvent")
    assert (ended["trigger_reason"], ended["transaction_info"]["stopped_reason"]) == (
        "RemoteStop",
        "Remote",
    )


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_messages_queued_offline_are_replayed_with_their_original_timestamps(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite], clock: SimClock, version: str
) -> None:
    charger = await started(make_site, csms, ChargerSpec("flaky", version, connectors=1))
    charger.plug_in(1, ev())
    await csms.next("StartTransaction" if version == "1.6" else "TransactionEvent")
    await charger.outbox.settled()  # the start's answer is in: nothing is in flight

    charger.disconnect(for_seconds=600)
    await csms.next("disconnect")
    for _ in range(3):
        await clock.advance(60)  # three meter readings while offline
    await clock.advance(20)
    charger.unplug(1)  # the vehicle leaves while the charger is still offline
    assert len(charger.outbox.queue) == 4
    await clock.advance(400)  # the offline period ends: reconnect, boot, replay

    await csms.next("BootNotification")
    expected = [iso(SIM_START + timedelta(seconds=s)) for s in (60, 120, 180)]
    if version == "1.6":
        readings = [await csms.next("MeterValues") for _ in range(3)]
        assert [r["meter_value"][0]["timestamp"] for r in readings] == expected
        assert {r["transaction_id"] for r in readings} == {100}
        stop = await csms.next("StopTransaction")
        assert stop["timestamp"] == iso(SIM_START + timedelta(seconds=200))
        stop_at = csms.index("StopTransaction")
    else:
        events = [await csms.next("TransactionEvent") for _ in range(4)]
        assert [e["timestamp"] for e in events[:3]] == expected
        assert [e["seq_no"] for e in events] == [1, 2, 3, 4]
        assert all(e["offline"] for e in events)
        assert events[-1]["event_type"] == "Ended"
        assert events[-1]["timestamp"] == iso(SIM_START + timedelta(seconds=200))
        stop_at = csms.index("TransactionEvent", lambda p: p["event_type"] == "Ended")
    # Replayed right after the boot, then the charger reports its present state.
    back = iso(SIM_START + timedelta(seconds=600))
    await csms.next("StatusNotification", where=lambda p: p["timestamp"] == back)
    reboot = [i for i, m in enumerate(csms.messages) if m.action == "BootNotification"][1]
    status_at = csms.index("StatusNotification", lambda p: p["timestamp"] == back)
    assert reboot < stop_at < status_at


async def test_a_faulted_connector_stops_the_session_and_reports_the_error(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite]
) -> None:
    charger = await started(make_site, csms, ChargerSpec("faulty", "1.6", connectors=1))
    charger.plug_in(1, ev())
    await csms.next("StartTransaction")
    charger.fault(1, "GroundFailure")
    assert (await csms.next("StopTransaction"))["reason"] == "EmergencyStop"
    faulted = await csms.next("StatusNotification", where=lambda p: p["status"] == "Faulted")
    assert faulted["error_code"] == "GroundFailure"
    charger.clear_fault(1)
    last = None
    while last is None or last["status"] != "Finishing":
        last = await csms.next("StatusNotification")
    assert last["error_code"] == "NoError"


async def test_a_charger_retries_a_refused_connection_and_a_pending_boot(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite], clock: SimClock
) -> None:
    csms.refuse = True
    csms.boot_answers = [("Pending", 30)]
    site = make_site(ChargerSpec("patient", "2.0.1", connectors=1, password="s3cret"))
    charger = site.charger("patient")
    await site.start()
    await csms.next("refused")
    await asyncio.wait_for(site.wait_until(lambda: charger.stats.connect_errors == 1), WAIT)
    csms.refuse = False
    await clock.advance(3)  # the first backoff is at most 3 s
    connect = await csms.next("connect")
    assert connect["authorization"] == "Basic " + base64.b64encode(b"patient:s3cret").decode()
    assert (await csms.next("BootNotification"))["reason"] == "PowerUp"
    await asyncio.wait_for(site.wait_until(lambda: charger.stats.boots_refused == 1), WAIT)
    assert not charger.online  # Pending: nothing else may be sent yet
    await clock.advance(30)
    await csms.next("BootNotification")
    await csms.next("StatusNotification")
    assert site.totals()["ever_accepted"] == 1


async def test_a_reset_ends_the_session_and_boots_again(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite], clock: SimClock
) -> None:
    charger = await started(make_site, csms, ChargerSpec("resettable", "2.0.1", connectors=1))
    charger.plug_in(1, ev())
    await csms.next("TransactionEvent")
    answer = await csms.peers["resettable"].call(call201.Reset("Immediate"))
    assert answer.status == "Accepted"
    ended = await csms.next("TransactionEvent")
    assert ended["transaction_info"]["stopped_reason"] == "ImmediateReset"
    await csms.next("disconnect")
    await clock.advance(5)
    assert (await csms.next("BootNotification"))["reason"] == "RemoteReset"
    # The vehicle is still plugged in: it authorizes again and a new session starts.
    again = await csms.next("TransactionEvent")
    assert again["event_type"] == "Started"


async def test_configuration_local_list_and_triggers_16(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite]
) -> None:
    charger = await started(make_site, csms, ChargerSpec("conf16", "1.6", connectors=2))
    peer = csms.peers["conf16"]
    got = await peer.call(call16.GetConfiguration(["HeartbeatInterval", "NoSuchKey"]))
    assert got.configuration_key == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    ]
    assert got.unknown_key == ["NoSuchKey"]
    everything = await peer.call(call16.GetConfiguration())
    keys = {k["key"] for k in everything.configuration_key}
    assert {"MeterValueSampleInterval", "AuthorizeRemoteTxRequests"} <= keys
    assert {"SupportedFeatureProfiles", "NumberOfConnectors"} <= keys
    change = call16.ChangeConfiguration
    assert (await peer.call(change("MeterValueSampleInterval", "15"))).status == "Accepted"
    assert charger.meter_interval == 15
    assert (await peer.call(change("NumberOfConnectors", "5"))).status == "Rejected"
    assert (await peer.call(change("NoSuchKey", "1"))).status == "NotSupported"

    entries = [{"id_tag": "LOCAL1", "id_tag_info": {"status": "Accepted"}}]
    assert (await peer.call(call16.SendLocalList(3, "Full", entries))).status == "Accepted"
    assert (await peer.call(call16.GetLocalListVersion())).list_version == 3
    echo = await peer.call(call16.DataTransfer("evhub", "echo", "hello"))
    assert (echo.status, echo.data) == ("Accepted", "hello")
    assert (await peer.call(call16.TriggerMessage("Heartbeat"))).status == "Accepted"
    await csms.next("Heartbeat")
    assert (await peer.call(call16.UnlockConnector(9))).status == "NotSupported"


async def test_variables_and_triggers_201(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite]
) -> None:
    charger = await started(make_site, csms, ChargerSpec("vars201", "2.0.1", connectors=2))
    peer = csms.peers["vars201"]
    got = await peer.call(
        call201.GetVariables(
            [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                {"component": {"name": "Nope"}, "variable": {"name": "X"}},
            ]
        )
    )
    assert [r["attribute_status"] for r in got.get_variable_result] == [
        "Accepted",
        "UnknownComponent",
    ]
    assert got.get_variable_result[0]["attribute_value"] == "300"
    item = {
        "attribute_value": "15",
        "component": {"name": "SampledDataCtrlr"},
        "variable": {"name": "TxUpdatedInterval"},
    }
    put = await peer.call(call201.SetVariables([item]))
    assert put.set_variable_result[0]["attribute_status"] == "Accepted"
    assert charger.meter_interval == 15
    await csms.next("StatusNotification")
    await csms.next("StatusNotification")
    answer = await peer.call(call201.TriggerMessage("StatusNotification", evse={"id": 2}))
    assert answer.status == "Accepted"
    assert (await csms.next("StatusNotification"))["evse_id"] == 2

    assert (await peer.call(call201.GetBaseReport(5, "FullInventory"))).status == "Accepted"
    report = await csms.next("NotifyReport")
    assert report["request_id"] == 5
    found = {
        (r["component"]["name"], r["variable"]["name"]): r["variable_attribute"][0]
        for r in report["report_data"]
    }
    assert found["SampledDataCtrlr", "TxUpdatedInterval"] == {
        "type": "Actual",
        "value": "15",
        "mutability": "ReadWrite",
    }
    assert ("EVSE", "AvailabilityState") in found


async def test_vehicles_arrive_and_leave_on_their_own_schedule(
    csms: MiniCsms, make_site: Callable[..., SimulatedSite], clock: SimClock
) -> None:
    arrivals = ArrivalConfig(first_within=60, dwell=(600, 600), gap=(3600, 3600))
    site = make_site(ChargerSpec("auto", "1.6", connectors=1), id_tags=["TAG-A"], arrivals=arrivals)
    await site.start()
    await csms.next("BootNotification")
    await clock.advance(60)
    start = await csms.next("StartTransaction")
    assert start["id_tag"] == "TAG-A"
    await clock.advance(600)
    assert (await csms.next("StopTransaction"))["reason"] == "EVDisconnected"
    assert site.totals()["transactions_stopped"] == 1


async def test_the_plugin_starts_chargers_after_the_hub_started_and_closes_them(
    csms: MiniCsms, clock: SimClock, tmp_path: Path
) -> None:
    config = simulator_plugin.CONFIG_SCHEMA(
        {
            "url": csms.url,
            "arrivals": {"enabled": False},
            "chargers": [
                {"id": "bay_{n:02d}", "count": 2, "ocpp": 1.6},
                {"id": "depot", "ocpp": "2.0.1", "connectors": 1},
            ],
        }
    )
    host = PluginHost()
    host.register("simulator", simulator_plugin)
    hub = Hub(tmp_path, clock=clock, config={"simulator": config})
    hub.plugins, host.hub = host, hub
    await hub.start()
    for charger in ("bay_01", "bay_02", "depot"):
        await csms.next("BootNotification", charger)
    status = hub.data["simulator"].status()
    assert [c["ocpp"] for c in status["chargers"]] == ["1.6", "1.6", "2.0.1"]
    await hub.stop()
    for charger in ("bay_01", "bay_02", "depot"):
        await csms.next("disconnect", charger)
    assert hub.states.all() == []  # the hub sees the chargers through OCPP only


def test_the_configuration_refuses_duplicate_charger_ids() -> None:
    import voluptuous as vol

    with pytest.raises(vol.Invalid, match="bay_01"):
        simulator_plugin.CONFIG_SCHEMA(
            {"chargers": [{"id": "bay_{n:02d}", "count": 2}, {"id": "bay_01"}]}
        )
    with pytest.raises(vol.Invalid, match="1-48 of"):
        simulator_plugin.CONFIG_SCHEMA({"chargers": [{"id": "bay 1"}]})


async def test_evhub_simulate_runs_chargers_for_a_duration(csms: MiniCsms) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "simulate", "--url", csms.url, "--chargers", "2",
        "--ocpp", "2.0.1", "--duration", "1.5", "--no-vehicles", "--id-prefix", "cli",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "2 chargers: 2 connected" in out.decode()
    assert {m.charger for m in csms.messages if m.action == "BootNotification"} == {
        "cli-001",
        "cli-002",
    }
