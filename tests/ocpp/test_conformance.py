"""Conformance: every OCPP 1.6 and 2.0.1 message in both directions, happy and rejection path,
over real loopback websockets; OCA-style scenarios the other modules do not cover; OCA_CASES.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from hub.charging.session import derive_energy
from hub.clock import SimClock
from hub.core import Hub
from hub.storage.sessions import SessionStore
from plugins.ocpp.rpc import (
    CALL,
    CALLERROR,
    CALLRESULT,
    Err,
    OcppCallError,
    Version,
    actions,
    validate,
)
from tests.ocpp.schema_payloads import broken_payload, minimal_payload
from tests.ocpp.support import (
    PASSWORD,
    ChargePoint16,
    ChargePoint201,
    basic_auth,
    charger,
    ocpp_url,
    running_hub,
)

# One hub and one raw OCPP-J connection per version serve all per-message tests (`link`, module
# scope); the scenarios run their own hub with the `ocpp` library as the charging station.
# OCA_CASES maps the tests of tests/ocpp/ to OCA CSMS test cases; docs/ocpp.md lists both.
#
# The per-message tests share the module-scoped hub, so every async test runs on the module loop
# (a module-wide `pytestmark` would also mark the sync tests, which pytest-asyncio warns about).
MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

V16, V201 = Version.V16, Version.V201
TIMEOUT = 10.0  # seconds any single answer may take before the test fails (never a sleep)
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)

# Charging station -> CSMS messages, as the specifications list them (1.6: core, firmware
# management and the security extension; 2.0.1: every CS -> CSMS message of Part 2).
STATION_ACTIONS: dict[Version, tuple[str, ...]] = {
    V16: (
        "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
        "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction",
        "StatusNotification", "StopTransaction", "SecurityEventNotification",
        "SignedFirmwareStatusNotification", "LogStatusNotification", "SignCertificate",
    ),
    V201: (
        "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer",
        "FirmwareStatusNotification", "Get15118EVCertificate", "GetCertificateStatus",
        "Heartbeat", "LogStatusNotification", "MeterValues", "NotifyChargingLimit",
        "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
        "PublishFirmwareStatusNotification", "ReportChargingProfiles",
        "ReservationStatusUpdate", "SecurityEventNotification", "SignCertificate",
        "StatusNotification", "TransactionEvent",
    ),
}  # fmt: skip
# CSMS -> charging station: everything else, and DataTransfer, which goes both ways.
HUB_ACTIONS: dict[Version, tuple[str, ...]] = {
    v: tuple(sorted((actions(v) - set(STATION_ACTIONS[v])) | {"DataTransfer"})) for v in Version
}
# Station messages the hub answers with NotSupported: certificate signing and ISO 15118
# certificates need a CA (and for 15118 a contract-certificate backend) the hub does not have.
UNSUPPORTED: dict[Version, frozenset[str]] = {
    V16: frozenset({"SignCertificate"}),
    V201: frozenset({"Get15118EVCertificate", "GetCertificateStatus", "SignCertificate"}),
}
# The hub's own first request after an accepted boot.
AFTER_BOOT = {V16: "GetConfiguration", V201: "GetBaseReport"}
# Error codes as each version spells them (1.6 misspells two), written out, not looked up.
CODES: dict[Version, dict[Err, str]] = {
    V16: {Err.OCCURRENCE: "OccurenceConstraintViolation", Err.FORMAT: "FormationViolation",
          Err.NOT_SUPPORTED: "NotSupported"},
    V201: {Err.OCCURRENCE: "OccurrenceConstraintViolation", Err.FORMAT: "FormatViolation",
           Err.NOT_SUPPORTED: "NotSupported"},
}  # fmt: skip

CHARGERS = {V16: "conf_16", V201: "conf_201"}
OCPP = {
    "chargers": [
        {"id": "conf_16", "password": PASSWORD, "ocpp": ["1.6"]},
        {"id": "conf_201", "password": PASSWORD, "ocpp": ["2.0.1"]},
        {"id": "auth_201", "password": PASSWORD, "ocpp": ["2.0.1"]},
    ]
}


def _cases(table: dict[Version, tuple[str, ...]]) -> list[Any]:
    return [pytest.param(v, a, id=f"{v.value}-{a}") for v in Version for a in table[v]]


STATION_CASES = _cases(STATION_ACTIONS)
HUB_CASES = _cases(HUB_ACTIONS)
SCHEMA_CASES = _cases({v: tuple(sorted(actions(v))) for v in Version})
# Parametrized test -> the ids it runs; docs/ocpp.md may cite only these (tests/ocpp/test_docs.py).
CASE_IDS: dict[str, frozenset[str]] = {
    "test_station_message": frozenset(p.id for p in STATION_CASES),
    "test_station_message_rejected": frozenset(p.id for p in STATION_CASES),
    "test_hub_message": frozenset(p.id for p in HUB_CASES),
    "test_hub_message_rejected": frozenset(p.id for p in HUB_CASES),
    "test_minimal_payloads_are_valid": frozenset(p.id for p in SCHEMA_CASES),
    "test_reconnect_with_the_same_id_mid_session_v16": frozenset({"dropped", "replaced"}),
    "test_reconnect_with_the_same_id_mid_session_v201": frozenset({"dropped", "replaced"}),
    "test_a_pending_station_may_only_boot": frozenset(v.value for v in Version),
}

_T = "tests/ocpp/"
# Tests of tests/ocpp/ -> the OCA CSMS test cases (ocpp16_csms_testcases.tsv and
# ocpp201_csms_testcases.tsv) they correspond to, where the correspondence is clear: the test
# plays the charging station's part of the case and checks what the case asks of the CSMS.
OCA_CASES: dict[str, tuple[str, ...]] = {
    _T + "test_v16_session.py::test_cold_boot_session_with_meter_values_and_stop":
        ("TC_001_CSMS", "TC_003_CSMS", "TC_023_1_CSMS"),
    _T + "test_v16_session.py::test_remote_stop_through_the_charger_service": ("TC_012_CSMS",),
    _T + "test_v16_session.py::test_remote_start_without_a_tag_is_accepted_for_that_start_only":
        ("TC_010_CSMS",),
    _T + "test_v16_session.py::test_offline_transaction_replayed_later_keeps_its_own_times":
        ("TC_039_CSMS",),
    _T + "test_v16_operations.py::test_boot_learns_the_charger_and_syncs_its_local_list":
        ("TC_019_1_CSMS", "TC_042_2_CSMS", "TC_043_4_CSMS", "TC_043_5_CSMS"),
    _T + "test_v16_operations.py::test_firmware_update_and_diagnostics_upload_through_the_hub":
        ("TC_044_1_CSMS", "TC_045_1_CSMS"),
    _T + "test_v16_operations.py::test_other_remote_operations":
        ("TC_021_CSMS", "TC_051_CSMS", "TC_054_CSMS", "TC_061_CSMS"),
    _T + "test_security.py::test_subprotocol_must_be_ours_and_allowed_for_the_charger":
        ("TC_088_CSMS",),
    _T + "test_security.py::test_profile_1_credentials": ("TC_085_CSMS",),
    _T + "test_security.py::test_profiles_2_and_3_over_tls": ("TC_086_CSMS", "TC_087_CSMS"),
    _T + "test_v201.py::test_cold_boot_reads_the_device_model":
        ("TC_B_01_CSMS", "TC_B_13_CSMS", "TC_K_01_CSMS"),
    _T + "test_v201.py::test_a_pending_station_gets_pending_and_no_report_request":
        ("TC_B_02_CSMS",),
    _T + "test_v201.py::test_regular_session_with_central_authorization":
        ("TC_C_02_CSMS", "TC_E_03_CSMS", "TC_E_09_CSMS", "TC_E_14_CSMS"),
    _T + "test_v201.py::test_remote_start_and_remote_stop": ("TC_F_01_CSMS", "TC_E_21_CSMS"),
    _T + "test_v201.py::test_notifications_are_answered_and_reported":
        ("TC_K_48_CSMS", "TC_K_50_CSMS", "TC_N_21_CSMS"),
    _T + "test_v201.py::test_commands_reach_the_station":
        ("TC_B_06_CSMS", "TC_B_09_CSMS", "TC_F_06_CSMS", "TC_G_03_CSMS", "TC_K_05_CSMS",
         "TC_K_60_CSMS"),
    _T + "test_conformance.py::test_station_message[ocpp1.6-DataTransfer]": ("TC_064_CSMS",),
    _T + "test_conformance.py::test_station_message[ocpp2.0.1-DataTransfer]": ("TC_P_02_CSMS",),
    _T + "test_conformance.py::test_hub_message[ocpp1.6-Reset]": ("TC_013_CSMS",),
    _T + "test_conformance.py::test_hub_message[ocpp2.0.1-ClearCache]": ("TC_C_37_CSMS",),
    _T + "test_conformance.py::test_hub_message[ocpp2.0.1-GetLocalListVersion]":
        ("TC_D_09_CSMS",),
    _T + "test_conformance.py::test_hub_message[ocpp2.0.1-GetTransactionStatus]":
        ("TC_E_34_CSMS",),
    _T + "test_conformance.py::test_offline_start_authorized_from_the_local_list_v16":
        ("TC_037_1_CSMS", "TC_037_3_CSMS", "TC_043_5_CSMS"),
    _T + "test_conformance.py::test_offline_start_authorized_from_the_local_list_v201":
        ("TC_D_01_CSMS", "TC_D_02_CSMS"),
    _T + "test_conformance.py::test_a_pending_station_may_only_boot[ocpp2.0.1]":
        ("TC_B_30_CSMS",),
    _T + "test_conformance.py::test_v201_basic_authentication_and_subprotocol":
        ("TC_A_01_CSMS", "TC_A_02_CSMS", "TC_A_03_CSMS", "TC_B_58_CSMS"),
}  # fmt: skip
OCA_LISTS = Path(os.environ.get("EVHUB_OCA_TESTCASES", "/work/shared/data/conformance"))


# --- a raw OCPP-J charging station --------------------------------------------------------------
class RawStation:
    """A charging station speaking raw OCPP-J over one websocket.

    `call` sends any CALL and returns the hub's answer frame. Every CALL of the hub is recorded
    in `received` and answered with the action's minimal valid response, or with the frame tail
    `replies[action]` says: [3, payload] or [4, code, description, details].
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, version: Version) -> None:
        self.ws, self.version = ws, version
        self.received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.replies: dict[str, list[Any]] = {}
        self._waiting: dict[str, asyncio.Future[list[Any]]] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                if frame[0] == CALL:
                    await self._answer(frame[1], frame[2], frame[3])
                    continue
                future = self._waiting.pop(frame[1], None)
                if future is not None and not future.done():
                    future.set_result(frame)
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("the hub closed the connection"))

    async def _answer(self, message_id: str, action: str, payload: dict[str, Any]) -> None:
        self.received.put_nowait((action, payload))
        tail = self.replies.get(action)
        if tail is None:
            tail = [CALLRESULT, minimal_payload(self.version, action, response=True)]
        await self.ws.send_str(json.dumps([tail[0], message_id, *tail[1:]]))

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        message_id = f"cs-{next(self._ids)}"
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        await self.ws.send_str(json.dumps([CALL, message_id, action, payload]))
        return await asyncio.wait_for(future, TIMEOUT)

    async def next_call(self) -> tuple[str, dict[str, Any]]:
        return await asyncio.wait_for(self.received.get(), TIMEOUT)

    def forget(self) -> None:
        """Drop the calls not read: what follows a boot, or what a failed test left behind."""
        while not self.received.empty():
            self.received.get_nowait()

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._reader, TIMEOUT)


@dataclass(slots=True)
class Link:
    hub: Hub
    stations: dict[Version, RawStation]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def link(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Link]:
    """One hub, and one booted raw station per version whose after-boot request is answered."""
    config_dir = tmp_path_factory.mktemp("conformance")
    async with (
        running_hub(config_dir, OCPP, SimClock(start=T0)) as hub,
        aiohttp.ClientSession() as http,
    ):
        stations: dict[Version, RawStation] = {}
        try:
            for version, charger_id in CHARGERS.items():
                ws = await http.ws_connect(
                    ocpp_url(hub, charger_id), protocols=[version.value],
                    headers=basic_auth(charger_id, PASSWORD),
                )  # fmt: skip
                station = stations[version] = RawStation(ws, version)
                boot = await station.call(
                    "BootNotification", minimal_payload(version, "BootNotification")
                )
                assert boot[0] == CALLRESULT and boot[2]["status"] == "Accepted", boot
                await _after_boot(hub, station)
            yield Link(hub, stations)
        finally:
            for station in stations.values():
                await station.close()


async def _after_boot(hub: Hub, station: RawStation) -> None:
    """Let the hub finish what it does after an accepted boot (the station answers each request
    minimally): it starts with AFTER_BOOT; whatever follows (a local list sync) is dropped."""
    await asyncio.wait_for(hub.block_till_done(), TIMEOUT)
    assert (await station.next_call())[0] == AFTER_BOOT[station.version]
    station.forget()


# --- the generated payloads ---------------------------------------------------------------------
@pytest.mark.parametrize(("version", "action"), SCHEMA_CASES)
def test_minimal_payloads_are_valid(version: Version, action: str) -> None:
    for response in (False, True):
        validate(version, action, minimal_payload(version, action, response=response),
                 response=response)  # fmt: skip
        broken, kind = broken_payload(version, action, response=response)
        with pytest.raises(OcppCallError) as refused:
            validate(version, action, broken, response=response)
        assert refused.value.kind is kind


def test_the_message_lists_cover_each_version() -> None:
    for version in Version:
        assert set(STATION_ACTIONS[version]) <= actions(version)
        assert len(set(STATION_ACTIONS[version])) == len(STATION_ACTIONS[version])
        assert set(STATION_ACTIONS[version]) | set(HUB_ACTIONS[version]) == actions(version)
    assert (len(actions(V16)), len(STATION_ACTIONS[V16]), len(HUB_ACTIONS[V16])) == (39, 14, 26)
    assert (len(actions(V201)), len(STATION_ACTIONS[V201]), len(HUB_ACTIONS[V201])) == (64, 25, 40)


@MODULE_LOOP
async def test_the_hub_handles_exactly_the_supported_station_messages(link: Link) -> None:
    for version, charger_id in CHARGERS.items():
        adapter = link.hub.data["ocpp"].stations[charger_id].commands
        supported = set(STATION_ACTIONS[version]) - UNSUPPORTED[version]
        assert set(adapter.handlers) == supported, version


# --- station -> hub: every message --------------------------------------------------------------
@MODULE_LOOP
@pytest.mark.parametrize(("version", "action"), STATION_CASES)
async def test_station_message(link: Link, version: Version, action: str) -> None:
    station = link.stations[version]
    answer = await station.call(action, minimal_payload(version, action))
    if action in UNSUPPORTED[version]:
        assert answer[0] == CALLERROR and answer[2] == "NotSupported", answer
        return
    assert answer[0] == CALLRESULT, answer
    validate(version, action, answer[2], response=True)
    if action == "BootNotification":
        assert answer[2]["status"] == "Accepted"
        await _after_boot(link.hub, station)


@MODULE_LOOP
@pytest.mark.parametrize(("version", "action"), STATION_CASES)
async def test_station_message_rejected(link: Link, version: Version, action: str) -> None:
    """A required field missing (or, for Heartbeat, a field too many): the version's error code,
    and the connection goes on. An unsupported message is NotSupported whatever it carries."""
    station = link.stations[version]
    payload, kind = broken_payload(version, action)
    if action in UNSUPPORTED[version]:
        kind = Err.NOT_SUPPORTED
    answer = await station.call(action, payload)
    assert answer[0] == CALLERROR and answer[2] == CODES[version][kind], answer
    heartbeat = await station.call("Heartbeat", {})
    assert heartbeat[0] == CALLRESULT and "currentTime" in heartbeat[2]


# --- hub -> station: every message through `ocpp.call` -------------------------------------------
async def _ocpp_call(link: Link, version: Version, action: str, payload: dict[str, Any]) -> Any:
    data = {"charger_id": CHARGERS[version], "action": action, "payload": payload}
    return await asyncio.wait_for(link.hub.services.call("ocpp", "call", data), TIMEOUT)


@MODULE_LOOP
@pytest.mark.parametrize(("version", "action"), HUB_CASES)
async def test_hub_message(link: Link, version: Version, action: str) -> None:
    station = link.stations[version]
    station.forget()
    request = minimal_payload(version, action)
    result = await _ocpp_call(link, version, action, request)
    assert station.received.get_nowait() == (action, request)
    assert station.received.empty()
    assert result == minimal_payload(version, action, response=True)


@MODULE_LOOP
@pytest.mark.parametrize(("version", "action"), HUB_CASES)
async def test_hub_message_rejected(link: Link, version: Version, action: str) -> None:
    """The station refuses (CALLERROR) or answers outside the schema: an error result each time,
    never an exception, and the connection goes on."""
    station = link.stations[version]
    station.forget()
    request = minimal_payload(version, action)
    try:
        station.replies[action] = [CALLERROR, "NotSupported", "not on this station", {}]
        refused = await _ocpp_call(link, version, action, request)
        assert refused == {"error": "NotSupported", "description": "not on this station"}
        broken, kind = broken_payload(version, action, response=True)
        station.replies[action] = [CALLRESULT, broken]
        invalid = await _ocpp_call(link, version, action, request)
        assert invalid["error"] == CODES[version][kind], invalid
        assert invalid["description"].startswith("payload")
    finally:
        station.replies.pop(action, None)
    assert [await station.next_call() for _ in "ab"] == [(action, request)] * 2
    assert (await station.call("Heartbeat", {}))[0] == CALLRESULT


# --- OCA-style scenarios ------------------------------------------------------------------------
SCENARIO_OCPP = {
    "chargers": [{"id": name, "password": PASSWORD} for name in ("bay_16", "bay_201", "local_16",
                                                                 "local_201")]
}  # fmt: skip
GOOD, LATER_BLOCKED = "04A1B2C3", "0BADCAFE"
ALLOW = {"allowlist": {"tokens": [{"id": GOOD}]}}


def at(clock: SimClock, minutes: float = 0) -> str:
    return (clock.now() + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _waiter(hub: Hub, event_type: str) -> asyncio.Queue[dict[str, Any]]:
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    hub.bus.listen(event_type, lambda e: seen.put_nowait(dict(e.data)))
    return seen


def _energy_register(wh: float, when: str, v201: bool) -> list[dict[str, Any]]:
    if v201:
        sample = {"value": wh, "measurand": "Energy.Active.Import.Register",
                  "unitOfMeasure": {"unit": "Wh"}}  # fmt: skip
    else:
        sample = {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
    return [{"timestamp": when, "sampledValue": [sample]}]


@MODULE_LOOP
@pytest.mark.parametrize("still_open", [False, True], ids=["dropped", "replaced"])
async def test_reconnect_with_the_same_id_mid_session_v16(tmp_path: Path, still_open: bool) -> None:
    """The connection drops (or a new one replaces it before the hub noticed) mid-transaction:
    the session goes on, and the StopTransaction on the new connection closes that session."""
    clock = SimClock(start=T0)
    async with running_hub(tmp_path, SCENARIO_OCPP, clock, **ALLOW) as hub:
        offline = _waiter(hub, "ocpp_disconnected")
        async with contextlib.AsyncExitStack() as first_link:
            cp = await first_link.enter_async_context(charger(hub, "bay_16"))
            await cp.call(
                call16.BootNotification(charge_point_vendor="ACME", charge_point_model="W")
            )
            await cp.call(call16.StatusNotification(1, "NoError", "Charging"))
            start = await cp.call(call16.StartTransaction(1, GOOD, 1_000, at(clock)))
            tx = start.transaction_id
            sample = _energy_register(3_000, at(clock, 10), False)
            await cp.call(call16.MeterValues(1, sample, transaction_id=tx))
            session_id = hub.states.get("charger.bay_16_1").attributes["session_id"]
            assert session_id is not None
            if not still_open:
                await first_link.aclose()  # the connection drops
                assert (await asyncio.wait_for(offline.get(), TIMEOUT))["charger_id"] == "bay_16"
                assert hub.states.get("charger.bay_16_1").state == "offline"
            async with charger(hub, "bay_16") as again:  # the same id, no new boot
                await again.call(call16.StatusNotification(1, "NoError", "Charging"))
                state = hub.states.get("charger.bay_16_1")
                assert state.state == "charging" and state.attributes["session_id"] == session_id
                sample = _energy_register(5_000, at(clock, 20), False)
                await again.call(call16.MeterValues(1, sample, transaction_id=tx))
                stop = await again.call(
                    call16.StopTransaction(7_000, at(clock, 30), tx, id_tag=GOOD)
                )
                assert stop.id_tag_info["status"] == "Accepted"
                assert offline.qsize() == 0  # a replaced socket's cleanup leaves the station online
                assert hub.states.get("charger.bay_16_1").attributes["session_id"] is None
        store = SessionStore(hub.recorder)
        sessions = await store.list(charger_id="bay_16")
        assert [s.id for s in sessions] == [session_id]
        session = sessions[0]
        assert session.status == "completed" and session.transaction_id == str(tx)
        readings = await store.readings(session.id)
        assert [r.value for r in readings] == [3_000.0, 5_000.0]
        assert derive_energy(session, readings).energy_wh == 6_000.0


@MODULE_LOOP
@pytest.mark.parametrize("still_open", [False, True], ids=["dropped", "replaced"])
async def test_reconnect_with_the_same_id_mid_session_v201(
    tmp_path: Path, still_open: bool
) -> None:
    """2.0.1: the transaction's later events arrive on the new connection; no seqNo gap, one
    session, and the Ended event closes it."""
    clock = SimClock(start=T0)

    def tx_event(kind: str, seq: int, minutes: float, wh: float, **more: Any) -> Any:
        return call201.TransactionEvent(
            event_type=kind, timestamp=at(clock, minutes), seq_no=seq,
            trigger_reason=more.pop("trigger", "MeterValuePeriodic"),
            transaction_info={"transactionId": "TX-R", **more},
            meter_value=_energy_register(wh, at(clock, minutes), True),
            evse={"id": 1, "connectorId": 1},
            id_token={"idToken": GOOD, "type": "ISO14443"} if seq == 0 else None,
        )  # fmt: skip

    async with running_hub(tmp_path, SCENARIO_OCPP, clock, **ALLOW) as hub:
        offline, gaps = _waiter(hub, "ocpp_disconnected"), _waiter(hub, "ocpp_seqno_gap")
        async with contextlib.AsyncExitStack() as first_link:
            cp = await first_link.enter_async_context(
                charger(hub, "bay_201", ChargePoint201, protocol="ocpp2.0.1")
            )
            station = {"model": "W", "vendorName": "ACME"}
            boot = await cp.call(call201.BootNotification(charging_station=station,
                                                          reason="PowerUp"))  # fmt: skip
            assert boot.status == "Accepted"
            started = await cp.call(tx_event("Started", 0, 0, 1_000, trigger="Authorized",
                                             chargingState="Charging"))  # fmt: skip
            assert started.id_token_info["status"] == "Accepted"
            await cp.call(tx_event("Updated", 1, 10, 3_000))
            session_id = hub.states.get("charger.bay_201_1").attributes["session_id"]
            assert session_id is not None
            if not still_open:
                await first_link.aclose()
                assert (await asyncio.wait_for(offline.get(), TIMEOUT))["charger_id"] == "bay_201"
            async with charger(hub, "bay_201", ChargePoint201, protocol="ocpp2.0.1") as again:
                await again.call(tx_event("Updated", 2, 20, 5_000))
                assert hub.states.get("charger.bay_201_1").attributes["session_id"] == session_id
                await again.call(tx_event("Ended", 3, 30, 7_000, trigger="StopAuthorized",
                                          stoppedReason="Local"))  # fmt: skip
                assert offline.qsize() == 0
        assert gaps.qsize() == 0
        store = SessionStore(hub.recorder)
        sessions = await store.list(charger_id="bay_201")
        assert [s.id for s in sessions] == [session_id]
        assert sessions[0].status == "completed"
        assert (sessions[0].meter_start_wh, sessions[0].meter_stop_wh) == (1_000, 7_000)
        readings = await store.readings(session_id)
        assert derive_energy(sessions[0], readings).energy_wh == 6_000.0


def _local_list_charger(memory: dict[str, str], updates: asyncio.Queue[str]) -> type:
    """A 1.6 charger with the LocalAuthListManagement profile whose list outlives connections."""

    class LocalListCharger(ChargePoint16):
        @on("GetConfiguration")
        def get_configuration(self, **_: Any) -> result16.GetConfiguration:
            keys = [
                {"key": "SupportedFeatureProfiles", "readonly": True,
                 "value": "Core,LocalAuthListManagement"},
                {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
            ]  # fmt: skip
            return result16.GetConfiguration(configuration_key=keys)

        @on("GetLocalListVersion")
        def get_local_list_version(self) -> result16.GetLocalListVersion:
            return result16.GetLocalListVersion(list_version=0)

        @on("SendLocalList")
        def send_local_list(self, update_type: str, **kw: Any) -> result16.SendLocalList:
            if update_type == "Full":
                memory.clear()
            for entry in kw.get("local_authorization_list") or ():
                info = entry.get("id_tag_info")
                if info is None:
                    memory.pop(entry["id_tag"], None)
                else:
                    memory[entry["id_tag"]] = info["status"]
            updates.put_nowait(update_type)
            return result16.SendLocalList("Accepted")

    return LocalListCharger


@MODULE_LOOP
async def test_offline_start_authorized_from_the_local_list_v16(tmp_path: Path) -> None:
    """The charger authorizes two cards from its local list while offline; one was blocked at
    the hub meanwhile. Both replayed starts are recorded; the blocked one is answered Blocked,
    so the charger stops it, and the hub then sends the block as a differential list update."""
    clock = SimClock(start=T0)
    memory: dict[str, str] = {}
    updates: asyncio.Queue[str] = asyncio.Queue()
    cls = _local_list_charger(memory, updates)
    async with running_hub(tmp_path, SCENARIO_OCPP, clock, **ALLOW) as hub:
        await hub.services.call("allowlist", "add_token", {"id": LATER_BLOCKED})
        async with charger(hub, "local_16", cls) as cp:
            await cp.call(
                call16.BootNotification(charge_point_vendor="ACME", charge_point_model="L")
            )
            assert await asyncio.wait_for(updates.get(), TIMEOUT) == "Full"
            await cp.call(call16.Heartbeat())  # the hub has read the SendLocalList answer
            assert hub.data["ocpp"].stations["local_16"].local_list_version is not None
        assert memory == {GOOD: "Accepted", LATER_BLOCKED: "Accepted"}

        await hub.services.call("allowlist", "block_token", {"id": LATER_BLOCKED})
        # Offline, the charger knows only its list: both cards may start.
        assert memory[GOOD] == memory[LATER_BLOCKED] == "Accepted"
        async with charger(hub, "local_16", cls) as cp:
            good = await cp.call(call16.StartTransaction(1, GOOD, 0, at(clock, -30)))
            bad = await cp.call(call16.StartTransaction(2, LATER_BLOCKED, 0, at(clock, -20)))
            assert good.id_tag_info["status"] == "Accepted"
            assert bad.id_tag_info["status"] == "Blocked"
            stop = call16.StopTransaction(800, at(clock), bad.transaction_id, reason="DeAuthorized")
            assert (await cp.call(stop)).id_tag_info is None

            store = SessionStore(hub.recorder)
            kept = await store.find("local_16", str(good.transaction_id))
            assert kept.status == "active" and kept.started_at == T0 - timedelta(minutes=30)
            refused = await store.find("local_16", str(bad.transaction_id))
            assert (refused.status, refused.stop_reason) == ("completed", "DeAuthorized")
            assert (refused.id_tag, refused.data["authorization"]) == (LATER_BLOCKED, "Blocked")
            assert derive_energy(refused, await store.readings(refused.id)).energy_wh == 800.0
            assert hub.states.get("charger.local_16_1").attributes["id_tag"] == GOOD
            assert hub.states.get("charger.local_16_2").attributes["session_id"] is None

            await clock.advance(6)  # the hub batches list changes for a few seconds
            assert await asyncio.wait_for(updates.get(), TIMEOUT) == "Differential"
            assert memory == {GOOD: "Accepted", LATER_BLOCKED: "Blocked"}


class _LocalList201(ChargePoint201):
    """A 2.0.1 station that keeps the local list the hub sends (in `memory`, set per test)."""

    memory: dict[str, str]
    updates: asyncio.Queue[str]

    @on("GetBaseReport")
    def get_base_report(self, **_: Any) -> result201.GetBaseReport:
        return result201.GetBaseReport(status="Accepted")

    @on("GetLocalListVersion")
    def get_local_list_version(self) -> result201.GetLocalListVersion:
        return result201.GetLocalListVersion(version_number=0)

    @on("SendLocalList")
    def send_local_list(self, update_type: str, **kw: Any) -> result201.SendLocalList:
        if update_type == "Full":
            self.memory.clear()
        for entry in kw.get("local_authorization_list") or ():
            token, info = entry["id_token"]["id_token"], entry.get("id_token_info")
            if info is None:
                self.memory.pop(token, None)
            else:
                self.memory[token] = info["status"]
        self.updates.put_nowait(update_type)
        return result201.SendLocalList(status="Accepted")


@MODULE_LOOP
async def test_offline_start_authorized_from_the_local_list_v201(tmp_path: Path) -> None:
    """2.0.1: the same story with offline TransactionEvents. `ocpp.sync_local_list` sends the
    whole list (Full); the block reaches the station as a differential update."""
    clock = SimClock(start=T0)

    class Station(_LocalList201):
        memory: dict[str, str] = {}
        updates: asyncio.Queue[str] = asyncio.Queue()

    def started(tx: str, evse: int, token: str, minutes: float) -> Any:
        return call201.TransactionEvent(
            event_type="Started", timestamp=at(clock, minutes), trigger_reason="Authorized",
            seq_no=0, offline=True, evse={"id": evse, "connectorId": 1},
            transaction_info={"transactionId": tx, "chargingState": "Charging"},
            id_token={"idToken": token, "type": "ISO14443"},
        )  # fmt: skip

    async with running_hub(tmp_path, SCENARIO_OCPP, clock, **ALLOW) as hub:
        await hub.services.call("allowlist", "add_token", {"id": LATER_BLOCKED})
        async with charger(hub, "local_201", Station, protocol="ocpp2.0.1") as cp:
            station = {"model": "L", "vendorName": "ACME"}
            await cp.call(call201.BootNotification(charging_station=station, reason="PowerUp"))
            await asyncio.wait_for(hub.block_till_done(), TIMEOUT)  # incl. a sync after boot
            synced = await hub.services.call(
                "ocpp", "sync_local_list", {"charger_id": "local_201", "full": True}
            )
            assert synced["status"] == "Accepted" and synced["update_type"] == "Full"
            sent = [Station.updates.get_nowait() for _ in range(Station.updates.qsize())]
            assert sent and set(sent) == {"Full"}
        assert Station.memory == {GOOD: "Accepted", LATER_BLOCKED: "Accepted"}

        await hub.services.call("allowlist", "block_token", {"id": LATER_BLOCKED})
        async with charger(hub, "local_201", Station, protocol="ocpp2.0.1") as cp:
            good = await cp.call(started("TX-GOOD", 1, GOOD, -30))
            bad = await cp.call(started("TX-BLOCKED", 2, LATER_BLOCKED, -20))
            assert good.id_token_info["status"] == "Accepted"
            assert bad.id_token_info["status"] == "Blocked"
            await cp.call(call201.TransactionEvent(
                event_type="Ended", timestamp=at(clock), trigger_reason="Deauthorized", seq_no=1,
                transaction_info={"transactionId": "TX-BLOCKED", "stoppedReason": "DeAuthorized"},
            ))  # fmt: skip

            store = SessionStore(hub.recorder)
            kept = await store.find("local_201", "TX-GOOD")
            assert kept.status == "active" and kept.started_at == T0 - timedelta(minutes=30)
            assert kept.data["offline"] is True and kept.data["authorization"] == "Accepted"
            refused = await store.find("local_201", "TX-BLOCKED")
            assert (refused.status, refused.stop_reason) == ("completed", "DeAuthorized")
            assert (refused.id_tag, refused.data["authorization"]) == (LATER_BLOCKED, "Blocked")

            await clock.advance(6)
            assert await asyncio.wait_for(Station.updates.get(), TIMEOUT) == "Differential"
            assert Station.memory == {GOOD: "Accepted", LATER_BLOCKED: "Blocked"}


@MODULE_LOOP
async def test_v201_basic_authentication_and_subprotocol(link: Link) -> None:
    """Security profile 1 with the 2.0.1 subprotocol: the user must be the station id and the
    password right; a station allowed only 2.0.1 cannot connect with 1.6 alone."""
    url = ocpp_url(link.hub, "auth_201")
    cases = [
        (["ocpp2.0.1"], basic_auth("auth_201", PASSWORD), 101),
        (["ocpp2.0.1"], basic_auth("someone_else", PASSWORD), 401),
        (["ocpp2.0.1"], basic_auth("auth_201", "not-the-password-at-all"), 401),
        (["ocpp1.6"], basic_auth("auth_201", PASSWORD), 400),
        (["ocpp1.6", "ocpp2.0.1"], basic_auth("auth_201", PASSWORD), 101),
    ]
    async with aiohttp.ClientSession() as http:
        for protocols, headers, expected in cases:
            try:
                async with http.ws_connect(url, protocols=protocols, headers=headers) as ws:
                    assert ws.protocol == "ocpp2.0.1"
                    status = 101
            except aiohttp.WSServerHandshakeError as err:
                status = err.status
            assert status == expected, (protocols, headers)


def test_the_oca_mapping_names_known_test_cases() -> None:
    known: set[str] = set()
    for name in ("ocpp16_csms_testcases.tsv", "ocpp201_csms_testcases.tsv"):
        path = OCA_LISTS / name
        if path.is_file():
            known |= {line.split("\t")[0] for line in path.read_text().splitlines() if line}
    for node, cases in OCA_CASES.items():
        assert node.startswith(_T) and "::" in node, node
        for case in cases:
            assert re.fullmatch(r"TC_[A-Z0-9_]+_CSMS", case), case
            assert not known or case in known, (node, case)


PENDING = {  # BootNotification, Authorize and a transaction start of each version
    V16: (
        {"chargePointVendor": "ACME", "chargePointModel": "P"},
        {"idTag": GOOD},
        ("StartTransaction", {"connectorId": 1, "idTag": GOOD, "meterStart": 0,
                              "timestamp": "2026-03-02T07:00:00Z"}),
    ),
    V201: (
        {"reason": "PowerUp", "chargingStation": {"model": "P", "vendorName": "ACME"}},
        {"idToken": {"idToken": GOOD, "type": "ISO14443"}},
        ("TransactionEvent", {"eventType": "Started", "timestamp": "2026-03-02T07:00:00Z",
                              "triggerReason": "Authorized", "seqNo": 0, "evse": {"id": 1},
                              "transactionInfo": {"transactionId": "TX-P"},
                              "idToken": {"idToken": GOOD, "type": "ISO14443"}}),
    ),
}  # fmt: skip


@MODULE_LOOP
@pytest.mark.parametrize("version", list(Version), ids=[v.value for v in Version])
async def test_a_pending_station_may_only_boot(tmp_path: Path, version: Version) -> None:
    """Until its registration is accepted a station may send only BootNotification: anything
    else gets SecurityError (2.0.1 B02.FR.09). A pending station connects without credentials,
    so it must not learn which id tags are valid nor record a transaction."""
    boot, authorize, (start_action, start) = PENDING[version]
    conf = {"allow_pending": True, "chargers": []}
    async with (
        running_hub(tmp_path, conf, SimClock(start=T0), **ALLOW) as hub,
        aiohttp.ClientSession() as http,
    ):
        ws = await http.ws_connect(ocpp_url(hub, "newcomer"), protocols=[version.value])
        station = RawStation(ws, version)
        try:
            for attempt in range(2):  # a second boot is still answered, still Pending
                answer = await station.call("BootNotification", boot)
                assert answer[0] == CALLRESULT and answer[2]["status"] == "Pending", attempt
                for action, payload in (("Authorize", authorize), ("Heartbeat", {}),
                                        (start_action, start)):  # fmt: skip
                    answer = await station.call(action, payload)
                    assert answer[0] == CALLERROR and answer[2] == "SecurityError", action
            assert await SessionStore(hub.recorder).list(charger_id="newcomer") == []
        finally:
            await station.close()
