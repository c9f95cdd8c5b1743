"""Malformed frames of every class get the CALLERROR OCPP-J names, and the connection goes on:
a Heartbeat right after each one is answered. Nothing a charger sends can crash the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.clock import SimClock
from tests.ocpp.support import PASSWORD, basic_auth, ocpp_url, running_hub

OCPP = {"chargers": [{"id": "cp_bad", "password": PASSWORD}], "max_frame_bytes": 65536}

HEARTBEAT = {"ocpp1.6": {}, "ocpp2.0.1": {}}
BOOT = {
    "ocpp1.6": {"chargePointVendor": "ACME", "chargePointModel": "X"},
    "ocpp2.0.1": {"reason": "PowerUp", "chargingStation": {"model": "X", "vendorName": "ACME"}},
}
# (frame, expected code in 1.6, expected code in 2.0.1, message id the answer carries)
CASES: list[tuple[str, str, str, str, str]] = [
    ("not json", "{not json", "FormationViolation", "RpcFrameworkError", "-1"),
    ("json object", '{"a": 1}', "ProtocolError", "RpcFrameworkError", "-1"),
    ("too short", '[2, "m1"]', "ProtocolError", "RpcFrameworkError", "-1"),
    ("bad message type", '[7, "m2", "Heartbeat", {}]', "ProtocolError",
     "MessageTypeNotSupported", "m2"),
    ("numeric id", '[2, 17, "Heartbeat", {}]', "ProtocolError", "RpcFrameworkError", "-1"),
    ("wrong arity", '[2, "m3", "Heartbeat"]', "ProtocolError", "RpcFrameworkError", "-1"),
    ("unknown action", '[2, "m4", "MakeCoffee", {}]', "NotImplemented", "NotImplemented", "m4"),
    ("payload not object", '[2, "m5", "Heartbeat", []]', "FormationViolation",
     "FormatViolation", "m5"),
    ("deep nesting", '[2, "m6", "Heartbeat", ' + '[' * 1100 + ']' * 1100 + ']',
     "ProtocolError", "RpcFrameworkError", "-1"),
    ("moderately deep", '[2, "m7", "DataTransfer", {"vendorId": "x", "data": '
     + '[' * 40 + ']' * 40 + '}]', "FormationViolation", "FormatViolation", "m7"),
    ("huge frame", '[2, "m8", "DataTransfer", {"vendorId": "x", "data": "'
     + "A" * 70_000 + '"}]', "FormationViolation", "FormatViolation", "-1"),
]  # fmt: skip
SCHEMA_CASES = {
    # action, 1.6 payload, 1.6 code, 2.0.1 payload, 2.0.1 code (a 1.6 payload breaks 2.0.1's
    # required fields first, so each version gets a payload that breaks only the rule tested)
    "missing field": ("BootNotification", {"chargePointVendor": "x"},
                      "OccurenceConstraintViolation", {"reason": "PowerUp"},
                      "OccurrenceConstraintViolation"),
    "wrong type": ("BootNotification", {"chargePointVendor": 7, "chargePointModel": "m"},
                   "TypeConstraintViolation",
                   {"reason": "PowerUp", "chargingStation": {"model": 7, "vendorName": "v"}},
                   "TypeConstraintViolation"),
    "too long": ("BootNotification", {"chargePointVendor": "x" * 21, "chargePointModel": "m"},
                 "PropertyConstraintViolation",
                 {"reason": "PowerUp", "chargingStation": {"model": "x" * 21, "vendorName": "v"}},
                 "PropertyConstraintViolation"),
    "bad enum": ("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                        "status": "Exploding"}, "PropertyConstraintViolation",
                 {"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Exploding",
                  "evseId": 1, "connectorId": 1}, "PropertyConstraintViolation"),
    "extra field": ("Heartbeat", {"surprise": True}, "FormationViolation", {"surprise": True},
                    "FormatViolation"),
}  # fmt: skip


async def _exchange(ws: aiohttp.ClientWebSocketResponse, frame: str) -> list[Any]:
    """Send a frame, return the answer to it; CALLs the hub makes meanwhile are declined."""
    await ws.send_str(frame)
    while True:
        message = json.loads((await ws.receive(timeout=10)).data)
        if message[0] != 2:
            return message
        await ws.send_str(json.dumps([4, message[1], "NotSupported", "test client", {}]))


async def _heartbeat_works(ws: aiohttp.ClientWebSocketResponse, n: int) -> None:
    answer = await _exchange(ws, json.dumps([2, f"hb{n}", "Heartbeat", {}]))
    assert answer[0] == 3 and answer[1] == f"hb{n}" and "currentTime" in answer[2]


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_every_class_of_malformed_frame(tmp_path: Path, protocol: str) -> None:
    async with (
        running_hub(tmp_path, OCPP, SimClock()) as hub,
        aiohttp.ClientSession() as session,
        session.ws_connect(
            ocpp_url(hub, "cp_bad"), protocols=[protocol],
            headers=basic_auth("cp_bad", PASSWORD),
        ) as ws,
    ):  # fmt: skip
        boot = await _exchange(ws, json.dumps([2, "b", "BootNotification", BOOT[protocol]]))
        assert boot[0] == 3
        for n, (name, frame, code16, code201, message_id) in enumerate(CASES):
            answer = await _exchange(ws, frame)
            expected = code16 if protocol == "ocpp1.6" else code201
            assert answer[:3] == [4, message_id, expected], name
            await _heartbeat_works(ws, n)
        for n, (name, (action, p16, code16, p201, code201)) in enumerate(SCHEMA_CASES.items()):
            payload, code = (p16, code16) if protocol == "ocpp1.6" else (p201, code201)
            answer = await _exchange(ws, json.dumps([2, f"s{n}", action, payload]))
            assert answer[:3] == [4, f"s{n}", code], name
            await _heartbeat_works(ws, 100 + n)
        await ws.send_bytes(b"\x00\x01binary")
        answer = json.loads((await ws.receive(timeout=10)).data)
        assert answer[:2] == [4, "-1"]
        await _heartbeat_works(ws, 999)
        assert hub.data["ocpp"].stations["cp_bad"].endpoint.errors >= len(CASES) + 5
