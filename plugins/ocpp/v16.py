"""OCPP 1.6J: handlers for what a charge point sends, and the commands the hub sends to it.

Handlers record and return; anything that needs an answer from the charger (the configuration
read after boot, a local list sync) runs as its own task after the handler has answered.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from hub.bus import Context
from hub.charging.auth import AuthorizationResult, AuthorizationStatus, IdToken, authorize
from hub.charging.charger import ChargingSchedule, CommandResult, ConnectorStatus
from hub.charging.session import SessionStatus
from plugins.ocpp.rpc import CallErrorReceived
from plugins.ocpp.schedule import charging_schedule, iso
from plugins.ocpp.transactions import (
    apply_readings,
    new_transaction_id,
    parse_meter_values,
    parse_timestamp,
)

if TYPE_CHECKING:
    from plugins.ocpp.server import OcppServer
    from plugins.ocpp.station import Station

_LOGGER = logging.getLogger(__name__)

REMOTE_START = "ocpp remote start"  # AuthorizationResult.source of the hub's own remote starts
REMOTE_START_TTL = timedelta(minutes=10)
# chargingProfileId is charger-wide in 1.6: a profile with the same id replaces it on whatever
# connector it was, so each connector gets its own ids (replaced on that connector, never stacked).
TX_DEFAULT_PROFILE_ID = 1000  # + connector
TX_PROFILE_ID = 2000  # + connector
PROFILE_STACK_LEVEL = 1


def id_tag_info(result: Any) -> dict[str, Any]:
    """AuthorizationResult -> 1.6 IdTagInfo (1.6 knows five statuses; the rest mean Invalid)."""
    status = str(result.status)
    if status not in ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"):
        status = "Invalid"
    info: dict[str, Any] = {"status": status}
    if result.expiry is not None:
        info["expiryDate"] = iso(result.expiry)
    if result.group_id:
        info["parentIdTag"] = result.group_id[:20]
    return info


class V16:
    """The 1.6 protocol for one station: `handlers` for the endpoint, commands for its entities."""

    version = "ocpp1.6"

    def __init__(self, server: OcppServer, station: Station) -> None:
        self.server = server
        self.station = station
        self.hub = server.hub
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "BootNotification": self.boot_notification,
            "Heartbeat": self.heartbeat,
            "StatusNotification": self.status_notification,
            "Authorize": self.authorize,
            "StartTransaction": self.start_transaction,
            "StopTransaction": self.stop_transaction,
            "MeterValues": self.meter_values,
            "DataTransfer": self.data_transfer,
            "DiagnosticsStatusNotification": self.status_report("diagnostics_status"),
            "FirmwareStatusNotification": self.status_report("firmware_status"),
            "LogStatusNotification": self.status_report("log_status"),
            "SignedFirmwareStatusNotification": self.status_report("firmware_status"),
            "SecurityEventNotification": self.security_event,
        }

    # --- charge point -> hub --------------------------------------------------------------
    def boot_notification(self, p: dict[str, Any]) -> dict[str, Any]:
        st = self.station
        st.boot.vendor, st.boot.model = p["chargePointVendor"], p["chargePointModel"]
        st.boot.serial = p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber")
        st.boot.firmware = p.get("firmwareVersion")
        st.boot.booted_at = self.hub.now()
        status = self.server.boot_status(st)
        st.accepted = status == "Accepted"
        st.publish()
        self.hub.bus.fire("ocpp_boot", {"charger_id": st.id, "status": status, **p})
        if st.accepted:
            self.hub.create_task(self._after_boot(), f"ocpp {st.id} after boot")
        interval = self.server.heartbeat_interval if st.accepted else self.server.pending_interval
        return {"status": status, "currentTime": iso(self.hub.now()), "interval": interval}

    async def _after_boot(self) -> None:
        """Learn what the charger can do; a charger that refuses is used with defaults."""
        try:
            answer = await self.station.call("GetConfiguration", {})
        except (CallErrorReceived, TimeoutError, ConnectionError) as err:
            _LOGGER.info("%s: GetConfiguration failed (%s); using defaults", self.station.id, err)
            return
        keys = {k["key"]: k.get("value") for k in answer.get("configurationKey", [])}
        self.station.configuration = keys
        units = keys.get("ChargingScheduleAllowedChargingRateUnit")
        if units:
            self.station.rate_units = tuple(
                u for u, word in (("A", "Current"), ("W", "Power")) if word in units
            ) or ("A",)
        count = keys.get("NumberOfConnectors")
        if count and str(count).isdigit():
            for n in range(1, min(int(count), 32) + 1):
                await self.station.connector(n)
        self.station.publish()
        if "LocalAuthListManagement" in str(keys.get("SupportedFeatureProfiles", "")):
            await self.server.local_lists.after_boot(self.station)

    def heartbeat(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"currentTime": iso(self.station.heartbeat())}

    async def status_notification(self, p: dict[str, Any]) -> dict[str, Any]:
        number = p["connectorId"]
        if number == 0:  # the charge point as a whole
            self.station.extra["status"] = p["status"]
            self.station.extra["error_code"] = p["errorCode"]
            return {}
        entity = await self.station.connector(number)
        data = entity.data
        data.status = ConnectorStatus(p["status"])
        data.error_code = None if p["errorCode"] == "NoError" else p["errorCode"]
        data.extra["error_info"] = p.get("info")
        data.extra["vendor_error_code"] = p.get("vendorErrorCode")
        data.extra["status_since"] = p.get("timestamp")
        entity.write_state()
        return {}

    async def authorize(self, p: dict[str, Any]) -> dict[str, Any]:
        result = await self._authorize(p["idTag"], 0)
        return {"idTagInfo": id_tag_info(result)}

    async def _authorize(self, id_tag: str, connector: int) -> Any:
        remote = self._remote_tags()
        if IdToken(id_tag).id in remote:
            # The hub started this session itself (an operator or the driver app asked):
            # the tag it sent is good for that start, whoever else knows it.
            return AuthorizationResult(AuthorizationStatus.ACCEPTED, source=REMOTE_START)
        entity = self.station.connectors.get(connector)
        target = entity.entity_id if entity else f"charger.{self.station.id}"
        return await authorize(self.hub, IdToken(id_tag), target, Context())

    def _remote_tags(self) -> dict[str, Any]:
        """Tags of the hub's own remote starts on this station, dropped after REMOTE_START_TTL."""
        tags: dict[str, Any] = self.station.extra.setdefault("remote_tags", {})
        now = self.hub.now()
        for tag in [t for t, expiry in tags.items() if expiry <= now]:
            del tags[tag]
        return tags

    async def start_transaction(self, p: dict[str, Any]) -> dict[str, Any]:
        st, number = self.station, p["connectorId"]
        started = parse_timestamp(p["timestamp"])
        entity = await st.connector(number)
        key = f"{st.id}|{number}|{p['idTag']}|{p['meterStart']}|{started.isoformat()}"
        result = await self._authorize(p["idTag"], number)
        # The transaction is recorded even when the tag is refused: the charger has started it
        # (possibly offline) and will stop it on our answer; a bill may still depend on it.
        session, created = await self.server.transactions.start(
            st.id,
            number,
            transaction_id=str(self._unused_id()),
            started_at=started,
            id_tag=p["idTag"],
            id_tag_type="ISO14443",
            meter_start_wh=float(p["meterStart"]),
            idempotency_key=key,
            data={"entity_id": entity.entity_id, "reservation_id": p.get("reservationId"),
                  "authorization": str(result.status)},
        )  # fmt: skip
        if created and result.status is AuthorizationStatus.ACCEPTED:
            entity.data.session_id, entity.data.id_tag = session.id, p["idTag"]
            entity.write_state()
        return {"transactionId": int(session.transaction_id), "idTagInfo": id_tag_info(result)}

    def _unused_id(self) -> int:
        while True:
            candidate = new_transaction_id()
            if not self.server.transactions.known(self.station.id, str(candidate)):
                return candidate

    async def stop_transaction(self, p: dict[str, Any]) -> dict[str, Any]:
        st, tx = self.station, str(p["transactionId"])
        session = await self.server.transactions.find(st.id, tx)
        if session is None:
            # A stop for a transaction we never saw: answered (a CALLERROR would make the charger
            # retry forever) and reported, never invented.
            st.hub.bus.fire("ocpp_unknown_transaction", {"charger_id": st.id, "transaction": tx})
            _LOGGER.warning("%s: StopTransaction for unknown transaction %s", st.id, tx)
            return {"idTagInfo": {"status": "Invalid"}} if p.get("idTag") else {}
        if session.status is SessionStatus.ACTIVE:  # a retried stop records nothing twice
            readings = parse_meter_values(
                st.id, session.connector, p.get("transactionData", ()), session.id
            )
            await self.server.transactions.record(readings)
        await self.server.transactions.stop(
            session,
            stopped_at=parse_timestamp(p["timestamp"]),
            meter_stop_wh=float(p["meterStop"]),
            reason=p.get("reason", "Local"),
        )
        entity = st.connectors.get(session.connector)
        if entity is not None and entity.data.session_id == session.id:
            entity.data.session_id = entity.data.id_tag = None
            entity.write_state()
        if p.get("idTag"):
            return {"idTagInfo": id_tag_info(await self._authorize(p["idTag"], session.connector))}
        return {}

    async def meter_values(self, p: dict[str, Any]) -> dict[str, Any]:
        st, number = self.station, p["connectorId"]
        session_id = None
        if "transactionId" in p:
            session = await self.server.transactions.find(st.id, str(p["transactionId"]))
            session_id = session.id if session else None
        readings = parse_meter_values(st.id, number, p["meterValue"], session_id)
        if session_id is not None:
            await self.server.transactions.record(readings)  # billing facts: durable first
        else:
            self.server.transactions.record_later(readings)
        if number > 0:
            entity = await st.connector(number)
            apply_readings(entity, readings)
            entity.write_state()
        return {}

    def data_transfer(self, p: dict[str, Any]) -> dict[str, Any]:
        self.hub.bus.fire(
            "ocpp_data_transfer",
            {"charger_id": self.station.id, "vendor_id": p["vendorId"],
             "message_id": p.get("messageId"), "data": p.get("data")},
        )  # fmt: skip
        return {"status": "UnknownVendorId"}

    def status_report(self, key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def handler(p: dict[str, Any]) -> dict[str, Any]:
            self.station.extra[key] = p.get("status")
            for entity in self.station.connectors.values():
                entity.data.extra[key] = p.get("status")
                entity.write_state()
            self.hub.bus.fire(f"ocpp_{key}", {"charger_id": self.station.id, **p})
            return {}

        return handler

    def security_event(self, p: dict[str, Any]) -> dict[str, Any]:
        self.server.registry.security_event(
            self.station.id, p["type"], p.get("techInfo", ""), address=self.station.address
        )
        return {}

    # --- hub -> charge point (ChargerEntity commands) ---------------------------------------
    def _schedule(self, schedule: ChargingSchedule) -> dict[str, Any]:
        phases = self.station.extra.get("phases", 3)
        return charging_schedule(schedule, self.station.rate_units, phases)

    async def set_limit(self, connector: int, schedule: ChargingSchedule) -> CommandResult:
        entity = self.station.connectors.get(connector)
        active = self.server.transactions.active_on(self.station.id, connector)
        tx = active.transaction_id if active else None
        profile: dict[str, Any] = {
            "chargingProfileId": (TX_PROFILE_ID if tx else TX_DEFAULT_PROFILE_ID) + connector,
            "stackLevel": PROFILE_STACK_LEVEL,
            "chargingProfilePurpose": "TxProfile" if tx else "TxDefaultProfile",
            "chargingProfileKind": "Absolute" if schedule.start else "Relative",
            "chargingSchedule": self._schedule(schedule),
        }
        if tx:
            profile["transactionId"] = int(tx)
        answer = await self.station.call(
            "SetChargingProfile", {"connectorId": connector, "csChargingProfiles": profile}
        )
        ok = answer["status"] == "Accepted"
        if ok and entity is not None:
            entity.data.limit = schedule.limit_at(self.hub.now(), self.hub.now())
            entity.write_state()
        return CommandResult(ok, answer["status"])

    async def start(self, connector: int, id_tag: str | None) -> CommandResult:
        tag = IdToken(id_tag).id[:20] if id_tag else "HUB" + secrets.token_hex(8).upper()
        self._remote_tags()[tag] = self.hub.now() + REMOTE_START_TTL
        payload: dict[str, Any] = {"idTag": tag, "connectorId": connector}
        answer = await self.station.call("RemoteStartTransaction", payload)
        if answer["status"] != "Accepted":
            self._remote_tags().pop(tag, None)
        return CommandResult(answer["status"] == "Accepted", answer["status"])

    async def stop(self, connector: int) -> CommandResult:
        active = self.server.transactions.active_on(self.station.id, connector)
        if active is None:
            return CommandResult(False, "no transaction on this connector")
        answer = await self.station.call(
            "RemoteStopTransaction", {"transactionId": int(active.transaction_id)}
        )
        return CommandResult(answer["status"] == "Accepted", answer["status"])

    async def unlock(self, connector: int) -> CommandResult:
        answer = await self.station.call("UnlockConnector", {"connectorId": connector})
        return CommandResult(answer["status"] == "Unlocked", answer["status"])

    async def reset(self, hard: bool) -> CommandResult:
        answer = await self.station.call("Reset", {"type": "Hard" if hard else "Soft"})
        return CommandResult(answer["status"] == "Accepted", answer["status"])

    async def set_available(self, connector: int, available: bool) -> CommandResult:
        kind = "Operative" if available else "Inoperative"
        answer = await self.station.call(
            "ChangeAvailability", {"connectorId": connector, "type": kind}
        )
        return CommandResult(answer["status"] in ("Accepted", "Scheduled"), answer["status"])
