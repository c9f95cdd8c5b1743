"""Remote operations on an OCPP 1.6 charger through the hub's services: configuration,
trigger, reservations, firmware from the hub's file server, diagnostics upload, local lists."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result

from hub.clock import SimClock
from tests.ocpp.support import PASSWORD, charger, running_hub

OCPP = {"chargers": [{"id": "ops_1", "password": PASSWORD}]}
ALLOW = {"allowlist": {"tokens": [{"id": "04A1B2C3"}, {"id": "0BADCAFE", "blocked": True}]}}


class Charger(ChargePoint):
    """Accepts everything and remembers what the hub asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.arrived = asyncio.Queue[str]()

    def _got(self, action: str, **payload: Any) -> None:
        self.received.setdefault(action, []).append(payload)
        self.arrived.put_nowait(action)

    @on("GetConfiguration")
    def get_configuration(self, **kw: Any) -> call_result.GetConfiguration:
        self._got("GetConfiguration", **kw)
        keys = [
            {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
            {"key": "SupportedFeatureProfiles", "readonly": True,
             "value": "Core,SmartCharging,LocalAuthListManagement,Reservation"},
            {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True,
             "value": "Current"},
        ]  # fmt: skip
        return call_result.GetConfiguration(configuration_key=keys)

    @on("GetLocalListVersion")
    def get_local_list_version(self) -> call_result.GetLocalListVersion:
        self._got("GetLocalListVersion")
        return call_result.GetLocalListVersion(list_version=0)

    @on("SendLocalList")
    def send_local_list(self, **kw: Any) -> call_result.SendLocalList:
        self._got("SendLocalList", **kw)
        return call_result.SendLocalList("Accepted")

    @on("UpdateFirmware")
    def update_firmware(self, **kw: Any) -> call_result.UpdateFirmware:
        self._got("UpdateFirmware", **kw)
        return call_result.UpdateFirmware()

    @on("GetDiagnostics")
    def get_diagnostics(self, **kw: Any) -> call_result.GetDiagnostics:
        self._got("GetDiagnostics", **kw)
        return call_result.GetDiagnostics(file_name="diag.tgz")

    @on("TriggerMessage")
    def trigger(self, **kw: Any) -> call_result.TriggerMessage:
        self._got("TriggerMessage", **kw)
        return call_result.TriggerMessage("Accepted")

    @on("ReserveNow")
    def reserve(self, **kw: Any) -> call_result.ReserveNow:
        self._got("ReserveNow", **kw)
        return call_result.ReserveNow("Accepted")

    @on("CancelReservation")
    def cancel(self, **kw: Any) -> call_result.CancelReservation:
        self._got("CancelReservation", **kw)
        return call_result.CancelReservation("Accepted")

    @on("ClearCache")
    def clear_cache(self) -> call_result.ClearCache:
        self._got("ClearCache")
        return call_result.ClearCache("Accepted")

    @on("ChangeConfiguration")
    def change(self, **kw: Any) -> call_result.ChangeConfiguration:
        self._got("ChangeConfiguration", **kw)
        return call_result.ChangeConfiguration("Accepted")

    @on("DataTransfer")
    def data_transfer(self, **kw: Any) -> call_result.DataTransfer:
        self._got("DataTransfer", **kw)
        return call_result.DataTransfer("Accepted", data="pong")


async def wait_for(cp: Charger, action: str) -> dict[str, Any]:
    while True:
        got = await asyncio.wait_for(cp.arrived.get(), 10)
        if got == action:
            return cp.received[action][-1]


async def test_boot_learns_the_charger_and_syncs_its_local_list(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "ops_1", Charger) as cp,
    ):
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="D"))
        full = await wait_for(cp, "SendLocalList")
        assert full["update_type"] == "Full"
        tags = {e["id_tag"]: e["id_tag_info"]["status"] for e in full["local_authorization_list"]}
        assert tags == {"04A1B2C3": "Accepted", "0BADCAFE": "Blocked"}
        assert hub.states.get("charger.ops_1_2") is not None  # NumberOfConnectors = 2
        assert hub.data["ocpp"].stations["ops_1"].rate_units == ("A",)

        await hub.services.call("allowlist", "add_token", {"id": "11223344"})
        await clock.advance(6)
        diff = await wait_for(cp, "SendLocalList")
        assert diff["update_type"] == "Differential"
        assert [e["id_tag"] for e in diff["local_authorization_list"]] == ["11223344"]
        assert diff["list_version"] > full["list_version"]


async def test_firmware_update_and_diagnostics_upload_through_the_hub(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "acme-2.1.bin").write_bytes(b"\x7fELF firmware image")
    async with (
        running_hub(tmp_path, OCPP, clock, **ALLOW) as hub,
        charger(hub, "ops_1", Charger) as cp,
        aiohttp.ClientSession() as http,
    ):
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="D"))
        await hub.services.call(
            "ocpp", "update_firmware", {"charger_id": "ops_1", "file": "acme-2.1.bin"}
        )
        location = cp.received["UpdateFirmware"][0]["location"]
        assert location.startswith("http://127.0.0.1:")
        async with http.get(location) as response:
            assert response.status == 200
            assert await response.read() == b"\x7fELF firmware image"
        async with http.get(location.replace("/firmware/", "/firmware/x")) as response:
            assert response.status == 404

        uploads: list[dict[str, Any]] = []
        hub.bus.listen("ocpp_file_uploaded", lambda e: uploads.append(dict(e.data)))
        await hub.services.call("ocpp", "upload_diagnostics", {"charger_id": "ops_1"})
        target = cp.received["GetDiagnostics"][0]["location"]
        form = aiohttp.FormData()
        form.add_field("file", b"log line 1\nlog line 2\n", filename="diag.log")
        async with http.post(target, data=form) as response:
            assert response.status == 201
        async with http.post(target, data=b"again") as response:
            assert response.status == 404  # one upload per grant
        assert len(uploads) == 1
        assert Path(uploads[0]["path"]).read_bytes() == b"log line 1\nlog line 2\n"
        assert Path(uploads[0]["path"]).is_relative_to(tmp_path / "diagnostics" / "ops_1")


async def test_other_remote_operations(tmp_path: Path) -> None:
    async with (
        running_hub(tmp_path, OCPP, SimClock(), **ALLOW) as hub,
        charger(hub, "ops_1", Charger) as cp,
    ):
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="D"))
        svc = hub.services.call
        got = await svc("ocpp", "get_configuration", {"charger_id": "ops_1"})
        assert {k["key"] for k in got["configurationKey"]} >= {"NumberOfConnectors"}
        await svc(
            "ocpp",
            "change_configuration",
            {"charger_id": "ops_1", "key": "MeterValueSampleInterval", "value": "60"},
        )
        assert cp.received["ChangeConfiguration"][-1] == {
            "key": "MeterValueSampleInterval",
            "value": "60",
        }
        assert (
            await svc(
                "ocpp",
                "trigger_message",
                {"charger_id": "ops_1", "message": "StatusNotification", "connector": 1},
            )
        )["status"] == "Accepted"
        reserved = await svc(
            "ocpp",
            "reserve_now",
            {"charger_id": "ops_1", "connector": 1, "id_tag": "04A1B2C3", "minutes": 30},
        )
        assert reserved["status"] == "Accepted"
        await svc(
            "ocpp",
            "cancel_reservation",
            {"charger_id": "ops_1", "reservation_id": reserved["reservation_id"]},
        )
        assert cp.received["CancelReservation"][0]["reservation_id"] == reserved["reservation_id"]
        assert (await svc("ocpp", "clear_cache", {"charger_id": "ops_1"}))["status"] == "Accepted"
        answer = await svc(
            "ocpp", "data_transfer", {"charger_id": "ops_1", "vendor_id": "acme", "data": "ping"}
        )
        assert answer == {"status": "Accepted", "data": "pong"}
        raw = await svc("ocpp", "call", {"charger_id": "ops_1", "action": "ClearCache"})
        assert raw == {"status": "Accepted"}
        refused = await svc(
            "ocpp", "call", {"charger_id": "ops_1", "action": "Reset", "payload": {"type": "Soft"}}
        )
        assert refused["error"] == "NotImplemented"  # the library charger has no Reset handler
