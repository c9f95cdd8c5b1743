"""OCPP 2.0.1: handlers for what a charging station sends, and the commands the hub sends to it.
TransactionEvent is in v201_tx.py; the per-station model and translations are in v201_model.py.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hub.bus import Context
from hub.charging.auth import AuthorizationResult, AuthorizationStatus, IdToken, authorize
from hub.charging.charger import ChargingSchedule, CommandResult
from plugins.ocpp.rpc import CallErrorReceived, OcppCallError
from plugins.ocpp.transactions import apply_readings, parse_meter_values
from plugins.ocpp.v201_model import (
    REMOTE_START_TTL,
    apply_report,
    charging_schedule,
    ev_needs,
    id_token_info,
    iso,
    state_of,
    variable_key,
)
from plugins.ocpp.v201_tx import TransactionEvents

if TYPE_CHECKING:
    from hub.charging.session import Session
    from plugins.ocpp.server import OcppServer
    from plugins.ocpp.station import Station

_LOGGER = logging.getLogger(__name__)

# Profile ids are station-wide in 2.0.1 (a new profile with the same id replaces the old one on
# any EVSE), so ours carry the EVSE: TxDefaultProfile 1000 + evse, TxProfile 2000 + evse.
TX_DEFAULT_PROFILE_BASE = 1000
TX_PROFILE_BASE = 2000
PROFILE_STACK_LEVEL = 1
MAX_REMOTE_STARTS = 16
MAX_RECORDS = 20  # notifications kept per kind on the station (the bus/recorder has them all)
REMOTE_START = "ocpp remote start"  # AuthorizationResult.source of the hub's own remote starts


def _request_id() -> int:
    return secrets.randbelow(2**31 - 2) + 1


class V201:
    """The 2.0.1 protocol for one station: `handlers` for the endpoint, commands for its EVSEs.

    Handlers record and return; what needs the station's answer (the device model read after
    boot) runs as its own task. Messages without a handler here (ISO 15118 certificates) get
    NotSupported; hub -> station messages without a command go through the `ocpp.call` service.
    """

    version = "ocpp2.0.1"

    def __init__(self, server: OcppServer, station: Station) -> None:
        self.server = server
        self.station = station
        self.hub = server.hub
        self.state = state_of(station)
        self.transaction_events = TransactionEvents(self)
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "BootNotification": self.boot_notification,
            "Heartbeat": self.heartbeat,
            "StatusNotification": self.status_notification,
            "NotifyReport": self.notify_report,
            "Authorize": self.authorize,
            "TransactionEvent": self.transaction_events.handle,
            "MeterValues": self.meter_values,
            "NotifyEVChargingNeeds": self.ev_charging_needs,
            "NotifyEVChargingSchedule": self.ev_charging_schedule,
            "NotifyChargingLimit": self.charging_limit,
            "ClearedChargingLimit": self.cleared_charging_limit,
            "ReportChargingProfiles": self.record("charging_profiles"),
            "NotifyEvent": self.notify_event,
            "SecurityEventNotification": self.security_event,
            "LogStatusNotification": self.status_report("log_status"),
            "FirmwareStatusNotification": self.status_report("firmware_status"),
            "PublishFirmwareStatusNotification": self.status_report("publish_firmware_status"),
            "DataTransfer": self.data_transfer,
            "ReservationStatusUpdate": self.reservation_status,
            "NotifyCustomerInformation": self.record("customer_information"),
            "NotifyDisplayMessages": self.record("display_messages"),
            "NotifyMonitoringReport": self.record("monitoring_report"),
        }

    def _fire(self, event: str, data: Mapping[str, Any]) -> None:
        self.hub.bus.fire(event, {"charger_id": self.station.id, **data})

    # --- provisioning -----------------------------------------------------------------------
    def boot_notification(self, p: dict[str, Any]) -> dict[str, Any]:
        st, cs = self.station, p["chargingStation"]
        st.boot.vendor, st.boot.model = cs["vendorName"], cs["model"]
        st.boot.serial, st.boot.firmware = cs.get("serialNumber"), cs.get("firmwareVersion")
        st.boot.booted_at = self.hub.now()
        st.extra["boot_reason"] = p["reason"]
        status = self.server.boot_status(st)
        st.accepted = status == "Accepted"
        st.publish()
        self._fire("ocpp_boot", {"status": status, **p})
        if st.accepted:
            self.hub.create_task(self._after_boot(), f"ocpp {st.id} base report")
        interval = self.server.heartbeat_interval if st.accepted else self.server.pending_interval
        return {"status": status, "currentTime": iso(self.hub.now()), "interval": interval}

    async def _after_boot(self) -> None:
        """Ask for the device model; the NotifyReports that follow fill station.configuration."""
        request_id = self.state.report_request = _request_id()
        payload = {"requestId": request_id, "reportBase": "FullInventory"}
        try:
            answer = await self.station.call("GetBaseReport", payload)
        except (CallErrorReceived, TimeoutError, ConnectionError) as err:
            _LOGGER.info("%s: GetBaseReport failed (%s); using defaults", self.station.id, err)
        else:
            if answer["status"] != "Accepted":
                status = answer["status"]
                _LOGGER.info("%s: GetBaseReport %s; using defaults", self.station.id, status)
        # A station without a local list answers GetLocalListVersion with a CALLERROR and is
        # left alone; the others get the hub's list.
        if self.station.connected:
            await self.server.local_lists.after_boot(self.station)

    def heartbeat(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"currentTime": iso(self.station.heartbeat())}

    async def notify_report(self, p: dict[str, Any]) -> dict[str, Any]:
        evses = apply_report(self.station, p.get("reportData", ()))
        for number, max_power in sorted(evses.items()):
            entity = await self.station.connector(number)
            if max_power:
                entity.data.max_power_w = max_power
        if not p.get("tbc"):
            self.station.publish()
            self._fire(
                "ocpp_report",
                {"request_id": p["requestId"], "seq_no": p["seqNo"],
                 "variables": len(self.station.configuration)},
            )  # fmt: skip
        return {}

    async def status_notification(self, p: dict[str, Any]) -> dict[str, Any]:
        number, status = p["evseId"], p["connectorStatus"]
        if number <= 0:  # the station as a whole
            self.station.extra["status"] = status
            return {}
        evse = self.state.evse(number)
        evse.connectors[p["connectorId"]] = status
        if status != "Occupied":
            evse.finished = False  # the vehicle has left
        entity = await self.station.connector(number)
        data = entity.data
        data.status = evse.status() or data.status
        data.extra["connector_status"] = {str(k): v for k, v in evse.connectors.items() if v}
        data.extra["status_since"] = p["timestamp"]
        entity.write_state()
        return {}

    # --- authorization ----------------------------------------------------------------------
    async def authorize(self, p: dict[str, Any]) -> dict[str, Any]:
        result = await self.check_token(p["idToken"], None, None)
        return {"idTokenInfo": id_token_info(result)}

    async def check_token(
        self,
        token: Mapping[str, Any],
        evse: int | None,
        remote_start_id: int | None,
        session: Session | None = None,
    ) -> AuthorizationResult:
        """Authorize through the hub's authorizers (default deny), except the token the hub
        itself sent in a RequestStartTransaction to this station: the hub started that charge,
        so the token is accepted on it and on every later event of the session it started."""
        id_token = IdToken(token["idToken"], token["type"])
        by_hub = (
            session is not None
            and session.id_tag == id_token.id
            and (session.data.get("authorization_source") == REMOTE_START)
        )
        if by_hub or self._remote_start(id_token, remote_start_id):
            return AuthorizationResult(
                AuthorizationStatus.ACCEPTED, reason="started by the hub", source=REMOTE_START
            )
        entity = self.station.connectors.get(evse) if evse else None
        target = entity.entity_id if entity else f"charger.{self.station.id}"
        return await authorize(self.hub, id_token, target, Context())

    def _remote_start(self, token: IdToken, remote_start_id: int | None) -> bool:
        starts, now = self.state.remote_starts, self.hub.now()
        for key in [k for k, (_, at) in starts.items() if now - at > REMOTE_START_TTL]:
            del starts[key]
        if remote_start_id is not None:
            pending = starts.get(remote_start_id)
            if pending is not None and pending[0] == token.id:
                del starts[remote_start_id]  # one transaction per remote start
                return True
            return False
        # Authorize (AuthorizeRemoteStart) carries no remoteStartId: match the hub's token.
        return token.type == "Central" and any(t == token.id for t, _ in starts.values())

    # --- readings and smart charging -------------------------------------------------------
    async def meter_values(self, p: dict[str, Any]) -> dict[str, Any]:
        # 2.0.1 puts transaction readings in TransactionEvent; these are others (the station's
        # main meter on EVSE 0, idle samples), so they are kept unlinked and never billed.
        number = p["evseId"]
        readings = parse_meter_values(self.station.id, number, p["meterValue"], None)
        self.server.transactions.record_later(readings)
        if number > 0:
            entity = await self.station.connector(number)
            apply_readings(entity, readings)
            entity.write_state()
        return {}

    def ev_charging_needs(self, p: dict[str, Any]) -> dict[str, Any]:
        number = p["evseId"]
        needs = {**p["chargingNeeds"], "received_at": iso(self.hub.now())}
        if "maxScheduleTuples" in p:
            needs["maxScheduleTuples"] = p["maxScheduleTuples"]
        self.station.ev_needs[number] = needs
        entity = self.station.connectors.get(number)
        if entity is not None:
            entity.data.extra["ev_needs"] = needs
            try:
                entity.update(**ev_needs(p["chargingNeeds"]))
            except (KeyError, TypeError, ValueError, OcppCallError) as err:
                # Schema-valid but unusable (a zero voltage, a bad date): kept raw, not planned on.
                _LOGGER.warning("%s: charging needs not used: %s", self.station.id, err)
                entity.write_state()
        self._fire(
            "ocpp_ev_charging_needs",
            {"evse": number, "entity_id": entity.entity_id if entity else None, "needs": needs},
        )
        return {"status": "Accepted"}

    def ev_charging_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        number = p["evseId"]
        schedule = {"timeBase": p["timeBase"], "chargingSchedule": p["chargingSchedule"]}
        self.station.extra.setdefault("ev_schedules", {})[number] = schedule
        entity = self.station.connectors.get(number)
        self._fire(
            "ocpp_ev_charging_schedule",
            {"evse": number, "entity_id": entity.entity_id if entity else None, **schedule},
        )
        return {"status": "Accepted"}

    def charging_limit(self, p: dict[str, Any]) -> dict[str, Any]:
        self.station.extra.setdefault("charging_limits", {})[p.get("evseId", 0)] = p
        self._fire("ocpp_charging_limit", p)
        return {}

    def cleared_charging_limit(self, p: dict[str, Any]) -> dict[str, Any]:
        self.station.extra.get("charging_limits", {}).pop(p.get("evseId", 0), None)
        self._fire("ocpp_charging_limit_cleared", p)
        return {}

    # --- diagnostics and the rest ------------------------------------------------------------
    def notify_event(self, p: dict[str, Any]) -> dict[str, Any]:
        for event in p["eventData"]:
            evse = event["component"].get("evse") or {}
            entity = self.station.connectors.get(evse.get("id", 0))
            if entity is None or event["variable"]["name"] != "Problem":
                continue
            # Problem=true on an EVSE/connector component is 2.0.1's error code.
            problem = event["actualValue"].lower() == "true" and not event.get("cleared")
            entity.data.error_code = (
                (event.get("techCode") or event["component"]["name"]) if problem else None
            )
            entity.write_state()
        self._fire(
            "ocpp_notify_event",
            {"generated_at": p["generatedAt"], "seq_no": p["seqNo"], "tbc": p.get("tbc", False),
             "events": p["eventData"]},
        )  # fmt: skip
        return {}

    def security_event(self, p: dict[str, Any]) -> dict[str, Any]:
        self.server.registry.security_event(
            self.station.id, p["type"], p.get("techInfo", ""), address=self.station.address
        )
        return {}

    def status_report(self, key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def handler(p: dict[str, Any]) -> dict[str, Any]:
            self.station.extra[key] = p["status"]
            for entity in self.station.connectors.values():
                entity.data.extra[key] = p["status"]
                entity.write_state()
            self._fire(f"ocpp_{key}", p)
            return {}

        return handler

    def record(self, key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Keep the last few reports of a kind on the station and put each on the bus."""

        def handler(p: dict[str, Any]) -> dict[str, Any]:
            kept = self.station.extra.setdefault(key, deque(maxlen=MAX_RECORDS))
            kept.append({"received_at": iso(self.hub.now()), **p})
            self._fire(f"ocpp_{key}", p)
            return {}

        return handler

    def reservation_status(self, p: dict[str, Any]) -> dict[str, Any]:
        reservations = self.station.extra.setdefault("reservations", {})
        reservations[p["reservationId"]] = p["reservationUpdateStatus"]
        self._fire("ocpp_reservation_status", p)
        return {}

    def data_transfer(self, p: dict[str, Any]) -> dict[str, Any]:
        self._fire(
            "ocpp_data_transfer",
            {"vendor_id": p["vendorId"], "message_id": p.get("messageId"), "data": p.get("data")},
        )
        return {"status": "UnknownVendorId"}

    # --- hub -> station: ChargerEntity commands ----------------------------------------------
    async def set_limit(self, connector: int, schedule: ChargingSchedule) -> CommandResult:
        entity = self.station.connectors.get(connector)
        active = self.server.transactions.active_on(self.station.id, connector)
        phases = (entity.data.phases if entity else None) or 3
        profile: dict[str, Any] = {
            "id": (TX_PROFILE_BASE if active else TX_DEFAULT_PROFILE_BASE) + connector,
            "stackLevel": PROFILE_STACK_LEVEL,
            "chargingProfilePurpose": "TxProfile" if active else "TxDefaultProfile",
            "chargingProfileKind": "Absolute" if schedule.start else "Relative",
            "chargingSchedule": [charging_schedule(schedule, self.station.rate_units, phases)],
        }
        if active:
            profile["transactionId"] = active.transaction_id
        answer = await self.station.call(
            "SetChargingProfile", {"evseId": connector, "chargingProfile": profile}
        )
        ok = answer["status"] == "Accepted"
        if ok and entity is not None:
            entity.data.limit = schedule.limit_at(self.hub.now(), self.hub.now())
            entity.write_state()
        return CommandResult(ok, answer["status"])

    async def clear_limit(self, connector: int) -> CommandResult:
        """Remove the hub's profiles from an EVSE (the station falls back to its own limits)."""
        ok = True
        for base in (TX_DEFAULT_PROFILE_BASE, TX_PROFILE_BASE):
            answer = await self.station.call(
                "ClearChargingProfile", {"chargingProfileId": base + connector}
            )
            ok = ok and answer["status"] in ("Accepted", "Unknown")
        return CommandResult(ok, "Accepted" if ok else "Rejected")

    async def start(self, connector: int, id_tag: str | None) -> CommandResult:
        remote_start_id = _request_id()
        token = IdToken(id_tag or "evhub", "Central")
        starts = self.state.remote_starts
        starts[remote_start_id] = (token.id, self.hub.now())
        while len(starts) > MAX_REMOTE_STARTS:
            starts.popitem(last=False)
        answer = await self.station.call(
            "RequestStartTransaction",
            {"idToken": {"idToken": token.id, "type": token.type},
             "remoteStartId": remote_start_id, "evseId": connector},
        )  # fmt: skip
        if answer["status"] != "Accepted":
            starts.pop(remote_start_id, None)
        return CommandResult(answer["status"] == "Accepted", answer["status"])

    async def stop(self, connector: int) -> CommandResult:
        active = self.server.transactions.active_on(self.station.id, connector)
        if active is None:
            return CommandResult(False, "no transaction on this connector")
        answer = await self.station.call(
            "RequestStopTransaction", {"transactionId": active.transaction_id}
        )
        return CommandResult(answer["status"] == "Accepted", answer["status"])

    async def unlock(self, connector: int) -> CommandResult:
        known = sorted(self.state.evse(connector).connectors) or [1]
        answer = await self.station.call(
            "UnlockConnector", {"evseId": connector, "connectorId": known[0]}
        )
        return CommandResult(answer["status"] == "Unlocked", answer["status"])

    async def reset(self, hard: bool) -> CommandResult:
        answer = await self.station.call("Reset", {"type": "Immediate" if hard else "OnIdle"})
        return CommandResult(answer["status"] in ("Accepted", "Scheduled"), answer["status"])

    async def set_available(self, connector: int, available: bool) -> CommandResult:
        answer = await self.station.call(
            "ChangeAvailability",
            {"operationalStatus": "Operative" if available else "Inoperative",
             "evse": {"id": connector}},
        )  # fmt: skip
        return CommandResult(answer["status"] in ("Accepted", "Scheduled"), answer["status"])

    # --- hub -> station: device model -------------------------------------------------------
    async def get_variables(self, wanted: list[tuple[str, str]]) -> dict[str, str | None]:
        """Read (component, variable) pairs; the values found also update the configuration."""
        answer = await self.station.call(
            "GetVariables",
            {"getVariableData": [{"component": {"name": c}, "variable": {"name": v}}
                                 for c, v in wanted]},
        )  # fmt: skip
        found: dict[str, str | None] = {}
        for item in answer["getVariableResult"]:
            key = variable_key(item["component"], item["variable"])
            value = item.get("attributeValue") if item["attributeStatus"] == "Accepted" else None
            found[key] = value
            if value is not None:
                self.station.configuration[key] = value
        return found

    async def set_variables(self, values: Mapping[tuple[str, str], str]) -> dict[str, str]:
        """Write variables; returns each one's attributeStatus (Accepted, RebootRequired, ...)."""
        answer = await self.station.call(
            "SetVariables",
            {"setVariableData": [{"component": {"name": c}, "variable": {"name": v},
                                  "attributeValue": value} for (c, v), value in values.items()]},
        )  # fmt: skip
        statuses: dict[str, str] = {}
        for item in answer["setVariableResult"]:
            key = variable_key(item["component"], item["variable"])
            statuses[key] = item["attributeStatus"]
            if item["attributeStatus"] in ("Accepted", "RebootRequired"):
                sent = values.get((item["component"]["name"], item["variable"]["name"]))
                if sent is not None:
                    self.station.configuration[key] = sent
        return statuses
