"""Secrets given to a service reach its handler but never the recorded `call_service` events.

Real hubs with the real recorder on a SQLite file; the events table is read back with sqlite3, as
anyone holding a copy of the database would read it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import voluptuous as vol

from hub.clock import SimClock
from hub.core import Hub
from hub.services import ServiceCall
from hub.storage.recorder import Recorder
from tests.ocpp.support import PASSWORD, basic_auth, ocpp_url, running_hub

CHARGER_PASSWORD = "approved-charger-secret-2026"  # 16+ characters, as profile 1 needs
HTTP = {"host": "127.0.0.1", "port": 0}


def recorded_events(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM events").fetchall()


def recorded_calls(rows: list[tuple[Any, ...]], service: str) -> list[dict[str, Any]]:
    calls = [json.loads(r[2]) for r in rows if r[1] == "call_service"]
    return [c["service_data"] for c in calls if c["service"] == service]


async def boot_pending(hub: Hub, charger_id: str) -> aiohttp.ClientSession:
    """A charger unknown to the hub connects without credentials and boots: it waits, Pending."""
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(ocpp_url(hub, charger_id), protocols=["ocpp1.6"])
    boot = {"chargePointVendor": "ACME", "chargePointModel": "X"}
    await ws.send_str(json.dumps([2, "b1", "BootNotification", boot]))
    answer = json.loads((await ws.receive(timeout=10)).data)
    assert answer[2]["status"] == "Pending"
    return session


async def test_approve_charger_password_is_used_but_never_recorded(tmp_path: Path) -> None:
    conf = {"chargers": [{"id": "bay_01", "password": PASSWORD}], "allow_pending": True}
    async with running_hub(tmp_path, conf, SimClock(), http=HTTP) as hub:
        pending = await boot_pending(hub, "new_unit")
        assert [p["charger_id"] for p in await hub.http.pending_chargers()] == ["new_unit"]
        await hub.services.call(
            "ocpp", "approve_charger",
            {"charger_id": "new_unit", "security_profile": 1, "password": CHARGER_PASSWORD},
        )  # fmt: skip
        await pending.close()
        # The web still sees the decision in the (masked) call_service event.
        assert await hub.http.pending_chargers() == []
        # The handler got the real password: the charger logs in with it, and only with it.
        async with aiohttp.ClientSession() as s:
            auth = basic_auth("new_unit", CHARGER_PASSWORD)
            async with s.ws_connect(ocpp_url(hub, "new_unit"), protocols=["ocpp1.6"], headers=auth):
                pass
        assert hub.recorder is not None
        await hub.recorder.flush()

    rows = recorded_events(tmp_path / "evhub.db")
    assert CHARGER_PASSWORD not in repr(rows)
    assert recorded_calls(rows, "approve_charger") == [
        {"charger_id": "new_unit", "security_profile": 1, "password": "***"}
    ]

    # After a restart the web rebuilds its pending list from those recorded events alone.
    async with running_hub(tmp_path, conf, SimClock(), http=HTTP) as hub:
        assert await hub.http.pending_chargers() == []


async def test_declared_and_credential_named_fields_are_masked_in_events(
    tmp_path: Path, clock: SimClock
) -> None:
    hub = Hub(tmp_path, clock=clock)
    hub.recorder = Recorder(hub, f"sqlite:///{tmp_path / 'evhub.db'}")
    await hub.start()
    try:
        seen: list[dict[str, Any]] = []

        def login(call: ServiceCall) -> None:
            seen.append(dict(call.data))

        schema = {
            vol.Required("user"): str,
            vol.Required("pin"): str,
            vol.Optional("note", default=""): str,
            vol.Optional("remote"): {str: str},
            vol.Optional("id_tag"): str,
        }
        hub.services.register("vault", "login", login, schema, secret_fields=["pin", "note"])
        data = {
            "user": "ops",
            "pin": "pin-4711-0815",
            "remote": {"api_key": "key-abc-123", "host": "cpo.example"},
            "id_tag": "CAFE0001",
        }
        await hub.services.call("vault", "login", data)
        assert hub.recorder is not None
        await hub.recorder.flush()
    finally:
        await hub.stop()

    assert seen == [{**data, "note": ""}]  # the handler works with what was sent
    rows = recorded_events(tmp_path / "evhub.db")
    assert "pin-4711-0815" not in repr(rows) and "key-abc-123" not in repr(rows)
    assert recorded_calls(rows, "login") == [
        {
            "user": "ops",
            "pin": "***",  # declared secret
            "note": "",  # declared, but empty: "none given" stays visible
            "remote": {"api_key": "***", "host": "cpo.example"},  # named like a credential
            "id_tag": "CAFE0001",  # an RFID card names a driver; history must show it
        }
    ]


async def test_a_configuration_value_is_masked_only_when_its_key_is_a_credential(
    tmp_path: Path,
) -> None:
    conf = {"chargers": [{"id": "bay_01", "password": PASSWORD}]}
    secret = "new-basic-auth-password-77"
    calls = [
        ("change_configuration", {"key": "AuthorizationKey", "value": secret}),
        ("change_configuration", {"key": "SecurityCtrlr.BasicAuthPassword", "value": secret}),
        ("change_configuration", {"key": "HeartbeatInterval", "value": "60"}),
        ("call", {"action": "ChangeConfiguration",
                  "payload": {"key": "AuthorizationKey", "value": secret}}),
        ("call", {"action": "SetVariables", "payload": {"setVariableData": [
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"},
             "attributeValue": secret}]}}),
        ("call", {"action": "Reset", "payload": {"type": "Soft"}}),
    ]  # fmt: skip
    async with running_hub(tmp_path, conf, SimClock()) as hub:
        for service, data in calls:
            # bay_01 is not connected: the call is announced (and recorded), then refused.
            try:
                await hub.services.call("ocpp", service, {"charger_id": "bay_01", **data})
            except ConnectionError:
                pass
            else:
                raise AssertionError(f"{service} reached a charger that is not connected")
        assert hub.recorder is not None
        await hub.recorder.flush()

    rows = recorded_events(tmp_path / "evhub.db")
    assert secret not in repr(rows)
    changes = recorded_calls(rows, "change_configuration")
    assert [c["value"] for c in changes] == ["***", "***", "60"]
    raw = recorded_calls(rows, "call")
    assert [c["payload"] for c in raw] == ["***", "***", {"type": "Soft"}]
