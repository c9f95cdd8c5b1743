"""`ocpp.*` services: every remote operation, spelled once for both protocol versions.

Each service builds the message of the charger's version, sends it, and returns the answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol
from aiohttp import WSCloseCode

from hub.services import ServiceCall, is_secret_key
from plugins.ocpp.chargers import MIN_PASSWORD
from plugins.ocpp.rpc import CallErrorReceived, Version, actions
from plugins.ocpp.schedule import iso

if TYPE_CHECKING:
    from hub.core import Hub
    from plugins.ocpp.server import OcppServer
    from plugins.ocpp.station import Station

DOMAIN = "ocpp"
_request_ids = itertools.count(1)
V16, V201 = "ocpp1.6", "ocpp2.0.1"
TRIGGERS = (
    "BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
    "Heartbeat", "MeterValues", "StatusNotification", "LogStatusNotification",
    "SignChargingStationCertificate", "TransactionEvent",
)  # fmt: skip


def _sets_secret(action: str, payload: dict[str, Any]) -> bool:
    """Whether a raw message sets a credential (its value must not be recorded)."""
    if action == "ChangeConfiguration":
        return is_secret_key(payload.get("key", ""))
    if action == "SetVariables":
        items = payload.get("setVariableData") or []
        return any(
            is_secret_key(str((item.get("variable") or {}).get("name", "")))
            for item in items
            if isinstance(item, dict)
        ) or not isinstance(items, list)
    return False


def register_services(hub: Hub, server: OcppServer, register: Callable[..., None]) -> None:
    def station(charger_id: str) -> Station:
        found = server.stations.get(charger_id)
        if found is None or not found.connected:
            raise ConnectionError(f"charger {charger_id} is not connected")
        return found

    def base_url(st: Station) -> str:
        return server.conf.get("public_url") or st.extra.get("base_url", "")

    def service(
        name: str, schema: dict[Any, Any], description: str, secret_fields: Any = ()
    ) -> Callable[[Callable[[Station, dict[str, Any]], Awaitable[Any]]], None]:
        def wrap(build: Callable[[Station, dict[str, Any]], Awaitable[Any]]) -> None:
            async def handler(call: ServiceCall) -> Any:
                st = station(call.data["charger_id"])
                try:
                    return await build(st, dict(call.data))
                except CallErrorReceived as err:
                    return {"error": err.code, "description": err.description}

            full = {vol.Required("charger_id"): str, **schema}
            register(DOMAIN, name, handler, full, description, secret_fields=secret_fields)

        return wrap

    @service(
        "call",
        {vol.Required("action"): str, vol.Optional("payload", default={}): dict},
        "Send any OCPP message of the charger's version (checked against its schema).",
        lambda d: ("payload",) if _sets_secret(d["action"], d["payload"]) else (),
    )
    async def raw(st: Station, d: dict[str, Any]) -> Any:
        if d["action"] not in actions(Version(st.version)):
            raise ValueError(f"{d['action']} is not an OCPP {st.version} action")
        return await st.call(d["action"], d["payload"])

    @service("get_configuration", {vol.Optional("keys", default=[]): [str]},
             "Read configuration keys (1.6) or variables (2.0.1).")  # fmt: skip
    async def get_configuration(st: Station, d: dict[str, Any]) -> Any:
        if st.version == V16:
            return await st.call("GetConfiguration", {"key": d["keys"]} if d["keys"] else {})
        wanted = [
            {"component": {"name": k.partition(".")[0]}, "variable": {"name": k.partition(".")[2]}}
            for k in d["keys"]
        ]
        if not wanted:
            return await st.call(
                "GetBaseReport", {"requestId": next(_request_ids), "reportBase": "FullInventory"}
            )
        return await st.call("GetVariables", {"getVariableData": wanted})

    @service("change_configuration", {vol.Required("key"): str, vol.Required("value"): str},
             "Set a configuration key (1.6) or a Component.Variable (2.0.1).",
             # AuthorizationKey, SecurityCtrlr.BasicAuthPassword: the charger's login.
             lambda d: ("value",) if is_secret_key(d["key"]) else ())  # fmt: skip
    async def change_configuration(st: Station, d: dict[str, Any]) -> Any:
        if st.version == V16:
            return await st.call("ChangeConfiguration", {"key": d["key"], "value": d["value"]})
        component, _, variable = d["key"].partition(".")
        data = {"component": {"name": component}, "variable": {"name": variable},
                "attributeValue": d["value"]}  # fmt: skip
        return await st.call("SetVariables", {"setVariableData": [data]})

    @service("trigger_message", {vol.Required("message"): vol.In(TRIGGERS),
                                 vol.Optional("connector"): vol.All(int, vol.Range(min=0))},
             "Ask the charger to send a message now.")  # fmt: skip
    async def trigger(st: Station, d: dict[str, Any]) -> Any:
        payload: dict[str, Any] = {"requestedMessage": d["message"]}
        if "connector" in d:
            key = "connectorId" if st.version == V16 else "evse"
            payload[key] = d["connector"] if st.version == V16 else {"id": d["connector"]}
        return await st.call("TriggerMessage", payload)

    @service("clear_cache", {}, "Clear the charger's authorization cache.")
    async def clear_cache(st: Station, d: dict[str, Any]) -> Any:
        return await st.call("ClearCache", {})

    @service("data_transfer", {vol.Required("vendor_id"): str,
                               vol.Optional("message_id"): str, vol.Optional("data"): object},
             "Send a vendor-specific DataTransfer.")  # fmt: skip
    async def data_transfer(st: Station, d: dict[str, Any]) -> Any:
        payload = {"vendorId": d["vendor_id"]}
        if "message_id" in d:
            payload["messageId"] = d["message_id"]
        if "data" in d:
            payload["data"] = d["data"]
        return await st.call("DataTransfer", payload)

    @service(
        "update_firmware",
        {
            vol.Required("file"): str,
            vol.Optional("retrieve_in", default=0): vol.All(int, vol.Range(min=0)),
        },
        "Have the charger download a firmware file the hub serves and install it.",
    )
    async def update_firmware(st: Station, d: dict[str, Any]) -> Any:
        url = server.files.firmware_url(base_url(st), st.id, d["file"])
        when = iso(hub.now() + timedelta(seconds=d["retrieve_in"]))
        if st.version == V16:
            return await st.call("UpdateFirmware", {"location": url, "retrieveDate": when})
        firmware = {"location": url, "retrieveDateTime": when}
        return await st.call(
            "UpdateFirmware", {"requestId": next(_request_ids), "firmware": firmware}
        )

    @service("upload_diagnostics", {vol.Optional("log_type", default="DiagnosticsLog"):
                                    vol.In(["DiagnosticsLog", "SecurityLog"])},
             "Have the charger upload its diagnostics or security log to the hub.")  # fmt: skip
    async def upload_diagnostics(st: Station, d: dict[str, Any]) -> Any:
        url = server.files.upload_url(base_url(st), st.id, d["log_type"])
        if st.version == V16 and d["log_type"] == "DiagnosticsLog":
            return await st.call("GetDiagnostics", {"location": url})
        return await st.call(
            "GetLog",
            {"logType": d["log_type"], "requestId": next(_request_ids),
             "log": {"remoteLocation": url}},
        )  # fmt: skip

    @service("reserve_now", {vol.Required("connector"): vol.All(int, vol.Range(min=0)),
                             vol.Required("id_tag"): str, vol.Required("minutes"): vol.All(
                                 int, vol.Range(min=1, max=24 * 60)),
                             vol.Optional("reservation_id"): vol.All(int, vol.Range(min=1))},
             "Reserve a connector (EVSE) for an id tag.")  # fmt: skip
    async def reserve(st: Station, d: dict[str, Any]) -> Any:
        rid = d.get("reservation_id") or next(_request_ids)
        expiry = iso(hub.now() + timedelta(minutes=d["minutes"]))
        if st.version == V16:
            payload = {"connectorId": d["connector"], "expiryDate": expiry,
                       "idTag": d["id_tag"], "reservationId": rid}  # fmt: skip
        else:
            payload = {"id": rid, "expiryDateTime": expiry, "evseId": d["connector"],
                       "idToken": {"idToken": d["id_tag"], "type": "ISO14443"}}  # fmt: skip
        answer = await st.call("ReserveNow", payload)
        return {**answer, "reservation_id": rid}

    @service("cancel_reservation", {vol.Required("reservation_id"): int}, "Cancel a reservation.")
    async def cancel(st: Station, d: dict[str, Any]) -> Any:
        return await st.call("CancelReservation", {"reservationId": d["reservation_id"]})

    @service(
        "sync_local_list",
        {vol.Optional("full", default=False): bool},
        "Bring the charger's local authorization list up to date with the hub.",
    )
    async def sync(st: Station, d: dict[str, Any]) -> Any:
        return await server.local_lists.sync(st, full=d["full"])

    async def approve(c: ServiceCall) -> None:
        charger_id = c.data["charger_id"]
        await server.registry.approve(
            charger_id, security_profile=c.data["security_profile"],
            password=c.data.get("password"),
        )  # fmt: skip
        conn = server.connections.get(charger_id)
        if conn is not None and c.data["security_profile"] > 0:
            # The socket it opened while pending carried no credentials: it must come back
            # with the ones it now needs before anything it sends is trusted.
            await conn.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"approved: reconnect")

    register(
        DOMAIN, "approve_charger", approve,
        {vol.Required("charger_id"): str,
         vol.Required("security_profile"): vol.In([0, 1, 2, 3]),
         vol.Optional("password"): vol.All(str, vol.Length(min=MIN_PASSWORD))},
        "Accept a pending charger, with the security profile and password it must use.",
        # The charger's login: the recorded call_service event must not hand it to a reader.
        secret_fields=("password",),
    )  # fmt: skip
    register(
        DOMAIN, "reject_charger", lambda c: server.registry.reject(c.data["charger_id"]),
        {vol.Required("charger_id"): str}, "Refuse a pending charger.",
    )  # fmt: skip
