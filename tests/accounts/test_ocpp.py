"""Accounts behind real OCPP 1.6 and 2.0.1 chargers (the `ocpp` library over loopback websockets):
a blocked or unknown card never charges, not even by remote start, and a block reaches the
chargers' local lists as a differential update.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from hub.clock import SimClock
from hub.core import Hub
from hub.storage.sessions import SessionStore
from tests.accounts.support import SEED
from tests.ocpp.support import PASSWORD, ChargePoint16, ChargePoint201, charger, running_hub

T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
OCPP = {
    "chargers": [{"id": "bay_16", "password": PASSWORD}, {"id": "bay_201", "password": PASSWORD}]
}
ACCOUNTS = {"accounts": SEED}  # only the accounts plugin authorizes: no allow-list configured
GOOD, BLOCKED, UNKNOWN = "04A1B2C3", "0BADCAFE", "DEADBEEF"
TIMEOUT = 10.0


def at(clock: SimClock, minutes: float = 0) -> str:
    return (clock.now() + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


class Charger16(ChargePoint16):
    """A 1.6 charger with LocalAuthListManagement that keeps the list and the hub's requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memory: dict[str, str] = {}
        self.updates: asyncio.Queue[str] = asyncio.Queue()
        self.remote_starts: list[str] = []
        self.cache_cleared: asyncio.Queue[bool] = asyncio.Queue()

    @on("ClearCache")
    def clear_cache(self) -> result16.ClearCache:
        self.cache_cleared.put_nowait(True)
        return result16.ClearCache("Accepted")

    @on("GetConfiguration")
    def get_configuration(self, **_: Any) -> result16.GetConfiguration:
        keys = [
            {"key": "SupportedFeatureProfiles", "readonly": True,
             "value": "Core,LocalAuthListManagement,RemoteTrigger"},
            {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
        ]  # fmt: skip
        return result16.GetConfiguration(configuration_key=keys)

    @on("GetLocalListVersion")
    def get_local_list_version(self) -> result16.GetLocalListVersion:
        return result16.GetLocalListVersion(list_version=0)

    @on("SendLocalList")
    def send_local_list(self, update_type: str, **kw: Any) -> result16.SendLocalList:
        if update_type == "Full":
            self.memory.clear()
        for entry in kw.get("local_authorization_list") or ():
            info = entry.get("id_tag_info")
            if info is None:
                self.memory.pop(entry["id_tag"], None)
            else:
                self.memory[entry["id_tag"]] = info["status"]
        self.updates.put_nowait(update_type)
        return result16.SendLocalList("Accepted")

    @on("RemoteStartTransaction")
    def remote_start(self, id_tag: str, **_: Any) -> result16.RemoteStartTransaction:
        self.remote_starts.append(id_tag)
        return result16.RemoteStartTransaction("Accepted")


class Station201(ChargePoint201):
    """The same for 2.0.1."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memory: dict[str, str] = {}
        self.updates: asyncio.Queue[str] = asyncio.Queue()
        self.remote_starts: list[dict[str, Any]] = []
        self.cache_cleared: asyncio.Queue[bool] = asyncio.Queue()

    @on("ClearCache")
    def clear_cache(self) -> result201.ClearCache:
        self.cache_cleared.put_nowait(True)
        return result201.ClearCache(status="Accepted")

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

    @on("RequestStartTransaction")
    def remote_start(self, id_token: dict[str, Any], **_: Any) -> result201.RequestStartTransaction:
        self.remote_starts.append(id_token)
        return result201.RequestStartTransaction(status="Accepted")


async def boot16(hub: Hub, cp: Charger16) -> None:
    await cp.call(call16.BootNotification(charge_point_vendor="ACME", charge_point_model="L"))
    assert await asyncio.wait_for(cp.updates.get(), TIMEOUT) == "Full"
    await cp.call(call16.Heartbeat())  # the hub has read the SendLocalList answer
    await asyncio.wait_for(hub.block_till_done(), TIMEOUT)


async def boot201(hub: Hub, cp: Station201) -> None:
    station = {"model": "L", "vendorName": "ACME"}
    await cp.call(call201.BootNotification(charging_station=station, reason="PowerUp"))
    assert await asyncio.wait_for(cp.updates.get(), TIMEOUT) == "Full"
    await asyncio.wait_for(hub.block_till_done(), TIMEOUT)


async def test_a_blocked_or_unknown_card_never_charges_on_ocpp_16(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ACCOUNTS) as hub,
        charger(hub, "bay_16", Charger16) as cp,
    ):
        await boot16(hub, cp)
        assert cp.memory[GOOD] == "Accepted" and cp.memory[BLOCKED] == "Blocked"
        for tag, expected in ((GOOD, "Accepted"), (BLOCKED, "Blocked"), (UNKNOWN, "Invalid")):
            answer = await cp.call(call16.Authorize(tag))
            assert answer.id_tag_info["status"] == expected, tag
        # A charger that starts anyway (offline, or ignoring the answer) is told to stop.
        start = await cp.call(call16.StartTransaction(2, BLOCKED, 0, at(clock)))
        assert start.id_tag_info["status"] == "Blocked"
        assert hub.states.get("charger.bay_16_2").attributes["session_id"] is None
        session = await SessionStore(hub.recorder).find("bay_16", str(start.transaction_id))
        assert session is not None and session.data["authorization"] == "Blocked"

        # Nor may an operator or an app start it remotely.
        refused = await hub.services.call(
            "charger", "start", {"entity_id": "charger.bay_16_1", "id_tag": BLOCKED}
        )
        assert refused["accepted"] is False and "Blocked" in refused["detail"]
        assert cp.remote_starts == []
        started = await hub.services.call(
            "charger", "start", {"entity_id": "charger.bay_16_1", "id_tag": GOOD}
        )
        assert started["accepted"] and cp.remote_starts == [GOOD]


async def test_a_blocked_or_unknown_card_never_charges_on_ocpp_201(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, **ACCOUNTS) as hub,
        charger(hub, "bay_201", Station201, protocol="ocpp2.0.1") as cp,
    ):
        await boot201(hub, cp)
        assert cp.memory[BLOCKED] == "Blocked"
        for tag, expected in ((GOOD, "Accepted"), (BLOCKED, "Blocked"), (UNKNOWN, "Invalid")):
            answer = await cp.call(call201.Authorize(id_token={"idToken": tag, "type": "ISO14443"}))
            assert answer.id_token_info["status"] == expected, tag
        started = await cp.call(call201.TransactionEvent(
            event_type="Started", timestamp=at(clock), trigger_reason="Authorized", seq_no=0,
            transaction_info={"transactionId": "TX-B", "chargingState": "Charging"},
            evse={"id": 1, "connectorId": 1}, id_token={"idToken": BLOCKED, "type": "ISO14443"},
        ))  # fmt: skip
        assert started.id_token_info["status"] == "Blocked"
        assert hub.states.get("charger.bay_201_1").attributes["id_tag"] is None

        refused = await hub.services.call(
            "charger", "start", {"entity_id": "charger.bay_201_1", "id_tag": BLOCKED}
        )
        assert refused["accepted"] is False and cp.remote_starts == []


async def charge_once(cp: Any, version: str, clock: SimClock) -> None:
    if version == "1.6":
        start = await cp.call(call16.StartTransaction(1, GOOD, 0, at(clock, -30)))
        await cp.call(call16.StopTransaction(2000, at(clock, -10), start.transaction_id))
        return
    token = {"idToken": GOOD, "type": "ISO14443"}
    for seq, kind in enumerate(("Started", "Ended")):
        await cp.call(call201.TransactionEvent(
            event_type=kind, timestamp=at(clock, -30 + 20 * seq), seq_no=seq,
            trigger_reason="Authorized" if seq == 0 else "StopAuthorized",
            transaction_info={"transactionId": "TX-G"}, evse={"id": 1, "connectorId": 1},
            id_token=token,
        ))  # fmt: skip


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_an_admin_block_reaches_the_chargers_local_list(tmp_path: Path, version: str) -> None:
    """The charger holds the card as Accepted; an admin blocks it; within a few seconds the hub
    sends a differential SendLocalList with the card Blocked, so it fails offline too."""
    clock = SimClock(start=T0)
    cls, name, protocol = (
        (Charger16, "bay_16", "ocpp1.6")
        if version == "1.6"
        else (Station201, "bay_201", "ocpp2.0.1")
    )
    async with (
        running_hub(tmp_path, OCPP, clock, **ACCOUNTS) as hub,
        charger(hub, name, cls, protocol=protocol) as cp,
    ):
        await (boot16(hub, cp) if version == "1.6" else boot201(hub, cp))
        assert cp.memory[GOOD] == "Accepted"
        station = hub.data["ocpp"].stations[name]
        assert station.local_list_version == (await hub.services.call(
            "accounts", "local_list", {}))["version"]  # fmt: skip

        await charge_once(cp, version, clock)  # the charger may now hold the card in its cache

        await hub.services.call("accounts", "block_token", {"id": GOOD, "reason": "lost"})
        assert await asyncio.wait_for(cp.cache_cleared.get(), TIMEOUT)  # at once, not batched
        # A change no list holds (a new driver) sends nothing.
        await hub.services.call("accounts", "create_account", {"name": "Someone Else"})
        await clock.advance(6)  # the hub batches list changes for a few seconds
        assert await asyncio.wait_for(cp.updates.get(), TIMEOUT) == "Differential"
        assert cp.memory[GOOD] == "Blocked"
        assert cp.updates.empty() and cp.cache_cleared.empty()


@pytest.mark.parametrize(
    ("config", "source"),
    [
        (
            {"allowlist": {"tokens": [{"id": GOOD, "expiry": "2027-01-01T00:00:00+01:00"}]}},
            "allowlist",
        ),
        ({**ACCOUNTS, "allowlist": {"tokens": [{"id": UNKNOWN}]}}, "allowlist"),  # as configured
        ({**ACCOUNTS, "ocpp_service": "accounts.local_list"}, "accounts"),
    ],
    ids=["allowlist-only", "both-default", "accounts-configured"],
)
async def test_the_list_comes_from_the_configured_or_the_present_authorizer(
    tmp_path: Path, config: dict[str, Any], source: str
) -> None:
    clock = SimClock(start=T0)
    ocpp = dict(OCPP)
    if "ocpp_service" in config:
        config = dict(config)
        ocpp["local_list_service"] = config.pop("ocpp_service")
    async with (
        running_hub(tmp_path, ocpp, clock, **config) as hub,
        charger(hub, "bay_16", Charger16) as cp,
    ):
        await boot16(hub, cp)
        if source == "accounts":
            assert cp.memory[BLOCKED] == "Blocked"
        else:
            assert BLOCKED not in cp.memory and len(cp.memory) == 1
