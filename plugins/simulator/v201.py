"""OCPP 2.0.1 for simulated chargers: TransactionEvent sessions, variables, and the CSMS's calls.

Connector N is EVSE N with connector 1; the library's v201 ChargePoint is the peer.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result

from plugins.simulator.charger import SimCharger
from plugins.simulator.connector import Connector, Sample, Status, Transaction
from plugins.simulator.link import WIRE, Message, OrderedPeer, Outgoing, add_followups
from plugins.simulator.meter import iso
from plugins.simulator.meter import meter_value_201 as meter_value
from plugins.simulator.profiles import TX
from plugins.simulator.settings import FIRMWARE, MODEL, VENDOR, base_report, lookup

_CONNECTOR_STATUS = {
    Status.AVAILABLE: "Available",
    Status.UNAVAILABLE: "Unavailable",
    Status.FAULTED: "Faulted",
}  # everything else: a vehicle is there, "Occupied"
_CHARGING_STATE = {
    Status.CHARGING: "Charging",
    Status.SUSPENDED_EV: "SuspendedEV",
    Status.SUSPENDED_EVSE: "SuspendedEVSE",
}  # else "EVConnected"
# The simulator's (1.6) stop reasons -> 2.0.1 (triggerReason, stoppedReason).
_STOP = {
    "EVDisconnected": ("EVDeparted", "EVDisconnected"),
    "Remote": ("RemoteStop", "Remote"),
    "Local": ("StopAuthorized", "Local"),
    "DeAuthorized": ("Deauthorized", "DeAuthorized"),
    "SoftReset": ("ResetCommand", "ImmediateReset"),
    "HardReset": ("ResetCommand", "ImmediateReset"),
    "UnlockCommand": ("UnlockCommand", "Other"),
    "EmergencyStop": ("AbnormalCondition", "GroundFault"),
}


class Charger201(SimCharger):
    version = "2.0.1"
    subprotocol = "ocpp2.0.1"
    assigns_tx_ids = True
    reset_on_idle = False

    def boot_payload(self) -> Message:
        station = {
            "model": MODEL,
            "vendorName": VENDOR,
            "serialNumber": self.serial,
            "firmwareVersion": FIRMWARE,
        }
        return "BootNotification", {"chargingStation": station, "reason": self._boot_reason}

    def heartbeat_payload(self) -> Message:
        return "Heartbeat", {}

    def authorize_payload(self, id_tag: str) -> Message:
        return "Authorize", {"idToken": {"idToken": id_tag, "type": "ISO14443"}}

    def authorize_status(self, result: Any) -> str:
        return str((result.id_token_info or {}).get("status", "Invalid"))

    def send_status(self, conn: Connector) -> None:
        payload = {
            "timestamp": iso(self.clock.now()),
            "connectorStatus": _CONNECTOR_STATUS.get(conn.status, "Occupied"),
            "evseId": conn.id,
            "connectorId": 1,
        }
        self.outbox.put(Outgoing(lambda: ("StatusNotification", payload)))

    def status_changed(self, conn: Connector, old: Status) -> None:
        if _CONNECTOR_STATUS.get(old, "Occupied") != _CONNECTOR_STATUS.get(conn.status, "Occupied"):
            self.send_status(conn)
        tx = conn.tx
        state = _CHARGING_STATE.get(conn.status, "EVConnected")
        if tx is not None and tx.charging_state != state:
            tx.charging_state = state
            self._event("Updated", "ChargingStateChanged", conn, tx, info={"chargingState": state})

    def report_all_statuses(self) -> None:
        for conn in self.connectors:
            conn.status = conn.derived_status()
            self.send_status(conn)

    def _event(
        self,
        event_type: str,
        trigger: str,
        conn: Connector,
        tx: Transaction,
        *,
        info: dict[str, Any] | None = None,
        sample: Sample | None = None,
        context: str = "Sample.Periodic",
        id_token: bool = False,
        periodic: bool = False,
    ) -> None:
        """Queue a TransactionEvent (durable: replayed after a disconnect, marked offline)."""
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": iso(sample.timestamp if sample else self.clock.now()),
            "triggerReason": trigger,
            "seqNo": tx.next_seq(),
            "transactionInfo": {
                "transactionId": tx.local_id,
                **{k: v for k, v in (info or {}).items() if v is not None},
            },
            "evse": {"id": conn.id, "connectorId": 1},
        }
        if sample is not None:
            payload["meterValue"] = [meter_value(sample, context)]
        if not self.online:
            payload["offline"] = True
        if conn.phases_used:
            payload["numberOfPhasesUsed"] = conn.phases_used
        if id_token and tx.id_tag:
            payload["idToken"] = {"idToken": tx.id_tag, "type": tx.id_type}

        def answered(result: Any) -> None:
            status = (result.id_token_info or {}).get("status", "Accepted")
            if status != "Accepted" and self.stop_on_invalid_id and conn.tx is tx:
                self.end_transaction(conn, "DeAuthorized")

        message = ("TransactionEvent", payload)
        self.outbox.put(Outgoing(lambda: message, answered, durable=True, periodic=periodic))

    def tx_started(self, conn: Connector, tx: Transaction, trigger: str) -> None:
        tx.charging_state = _CHARGING_STATE.get(Status(conn.state), "EVConnected")
        info = {"chargingState": tx.charging_state, "remoteStartId": tx.remote_start_id}
        sample = conn.sample(tx.started, self.voltages)
        self._event(
            "Started",
            trigger,
            conn,
            tx,
            info=info,
            sample=sample,
            context="Transaction.Begin",
            id_token=True,
        )

    def tx_sample(self, conn: Connector, tx: Transaction, sample: Sample) -> None:
        self._event("Updated", "MeterValuePeriodic", conn, tx, sample=sample, periodic=True)

    def tx_ended(self, conn: Connector, tx: Transaction, sample: Sample, reason: str) -> None:
        trigger, stopped = _STOP.get(reason, ("AbnormalCondition", "Other"))
        info = {
            "stoppedReason": stopped,
            "chargingState": "Idle" if reason == "EVDisconnected" else "EVConnected",
            "timeSpentCharging": int(tx.charging_s),
        }
        self._event("Ended", trigger, conn, tx, info=info, sample=sample, context="Transaction.End")

    def end_transaction(self, conn: Connector, reason: str) -> None:
        super().end_transaction(conn, reason)
        if self.reset_on_idle and all(c.tx is None for c in self.connectors):
            self.reset_on_idle = False
            self.reboot("SoftReset")

    def notify_report(self, request_id: int) -> None:
        payload = {
            "requestId": request_id,
            "generatedAt": iso(self.clock.now()),
            "seqNo": 0,
            "reportData": base_report(self),
        }
        self.outbox.put(Outgoing(lambda: ("NotifyReport", payload)))

    def triggered(self, message: str, targets: list[Connector]) -> None:
        if message == "StatusNotification":
            for conn in targets:
                self.send_status(conn)
        elif message == "Heartbeat":
            self.outbox.put(Outgoing(self.heartbeat_payload))
        elif message == "BootNotification":
            self.outbox.put(Outgoing(self.boot_payload))
        elif message in ("MeterValues", "TransactionEvent"):
            self._refresh()
            for conn in targets:
                sample = conn.sample(self.clock.now(), self.voltages)
                if message == "TransactionEvent" and conn.tx is not None:
                    self._event(
                        "Updated", "Trigger", conn, conn.tx, sample=sample, context="Trigger"
                    )
                elif message == "MeterValues":
                    values = [meter_value(sample, "Trigger")]
                    payload = {"evseId": conn.id, "meterValue": values}
                    self.outbox.put(Outgoing(lambda p=payload: ("MeterValues", p)))


class Peer201(OrderedPeer, ChargePoint):
    """The charging station end of the line, on the ocpp library; `sim` does the work."""

    def __init__(self, sim: Charger201, connection: Any) -> None:
        super().__init__(sim.id, connection, response_timeout=sim.ctx.response_timeout, logger=WIRE)
        self.sim = sim

    def _evse(self, evse_id: int | None) -> Connector | None:
        if evse_id and 0 < evse_id <= len(self.sim.connectors):
            return self.sim.connector(evse_id)
        return None

    @on("RequestStartTransaction")
    def _sim201_request_start(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        charging_profile: Any = None,
        **_: Any,
    ) -> Any:
        conn = self.sim.pick_connector(evse_id)
        if conn is None or (
            charging_profile and charging_profile.get("charging_profile_purpose") != TX
        ):
            return call_result.RequestStartTransaction("Rejected")
        tag, kind = id_token["id_token"], id_token.get("type", "Central")
        self.sim.after_reply(
            lambda: self.sim.remote_start(conn, tag, remote_start_id, charging_profile, kind)
        )
        return call_result.RequestStartTransaction("Accepted")

    @on("RequestStopTransaction")
    def _sim201_request_stop(self, transaction_id: str, **_: Any) -> Any:
        conn = self.sim.find_transaction(transaction_id)
        if conn is None:
            return call_result.RequestStopTransaction("Rejected")
        self.sim.after_reply(lambda: self.sim.end_transaction(conn, "Remote"))
        return call_result.RequestStopTransaction("Accepted")

    @on("SetChargingProfile")
    def _sim201_set_profile(self, evse_id: int, charging_profile: Any, **_: Any) -> Any:
        return call_result.SetChargingProfile(self.sim.set_profile(evse_id, charging_profile))

    @on("ClearChargingProfile")
    def _sim201_clear_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: Any = None,
        **_: Any,
    ) -> Any:
        criteria = charging_profile_criteria or {}
        removed = self.sim.clear_profiles(
            profile_id=charging_profile_id,
            connector_id=criteria.get("evse_id"),
            purpose=criteria.get("charging_profile_purpose"),
            stack_level=criteria.get("stack_level"),
        )
        return call_result.ClearChargingProfile("Accepted" if removed else "Unknown")

    @on("GetCompositeSchedule")
    def _sim201_composite(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        if not 0 <= evse_id <= len(self.sim.connectors):
            return call_result.GetCompositeSchedule("Rejected")
        unit = charging_rate_unit or "A"
        start, periods = self.sim.composite(evse_id, duration, unit)
        schedule = {
            "evse_id": evse_id,
            "duration": duration,
            "schedule_start": iso(start),
            "charging_rate_unit": unit,
            "charging_schedule_period": [
                {"start_period": int(s), "limit": limit} for s, limit in periods
            ],
        }
        return call_result.GetCompositeSchedule("Accepted", schedule=schedule)

    @on("ChangeAvailability")
    def _sim201_availability(self, operational_status: str, evse: Any = None, **_: Any) -> Any:
        evse_id = (evse or {}).get("id", 0)
        return call_result.ChangeAvailability(
            self.sim.change_availability(evse_id, operational_status == "Operative")
        )

    @on("UnlockConnector")
    def _sim201_unlock(self, evse_id: int, connector_id: int, **_: Any) -> Any:
        conn = self._evse(evse_id)
        if conn is None or connector_id != 1:
            return call_result.UnlockConnector("UnknownConnector")
        if conn.tx is not None:
            return call_result.UnlockConnector("OngoingAuthorizedTransaction")
        self.sim.after_reply(lambda: self.sim.unlock(conn))
        return call_result.UnlockConnector("Unlocked")

    @on("Reset")
    def _sim201_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:
        if type == "OnIdle" and any(c.tx is not None for c in self.sim.connectors):
            self.sim.reset_on_idle = True
            return call_result.Reset("Scheduled")
        self.sim.after_reply(lambda: self.sim.reboot("HardReset"))
        return call_result.Reset("Accepted")

    @on("TriggerMessage")
    def _sim201_trigger(self, requested_message: str, evse: Any = None, **_: Any) -> Any:
        evse_id = (evse or {}).get("id")
        conn = self._evse(evse_id)
        if evse_id and conn is None:
            return call_result.TriggerMessage("Rejected")
        supported = (
            "StatusNotification",
            "Heartbeat",
            "BootNotification",
            "MeterValues",
            "TransactionEvent",
        )
        if requested_message not in supported:
            return call_result.TriggerMessage("NotImplemented")
        targets = [conn] if conn else list(self.sim.connectors)
        self.sim.after_reply(lambda: self.sim.triggered(requested_message, targets))
        return call_result.TriggerMessage("Accepted")

    @on("GetBaseReport")
    def _sim201_base_report(self, request_id: int, report_base: str, **_: Any) -> Any:
        self.sim.after_reply(lambda: self.sim.notify_report(request_id))
        return call_result.GetBaseReport("Accepted")

    @on("GetVariables")
    def _sim201_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            status, setting = lookup(item)
            result = {
                "attribute_status": status,
                "component": item["component"],
                "variable": item["variable"],
            }
            if setting is not None:
                result["attribute_value"] = setting.get(self.sim)
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def _sim201_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            status, setting = lookup(item)
            if setting is not None:
                status = (
                    "Accepted"
                    if setting.set(self.sim, str(item["attribute_value"]))
                    else "Rejected"
                )
            results.append(
                {
                    "attribute_status": status,
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return call_result.SetVariables(set_variable_result=results)

    @on("DataTransfer")
    def _sim201_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> Any:
        if vendor_id != VENDOR:
            return call_result.DataTransfer("UnknownVendorId")
        return call_result.DataTransfer("Accepted", data=data)

    @on("SendLocalList")
    def _sim201_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[Any] | None = None,
        **_: Any,
    ) -> Any:
        entries = {
            e["id_token"]["id_token"]: (e.get("id_token_info") or {}).get("status")
            for e in local_authorization_list or ()
        }
        return call_result.SendLocalList(
            self.sim.update_local_list(version_number, update_type == "Full", entries)
        )

    @on("GetLocalListVersion")
    def _sim201_local_list_version(self, **_: Any) -> Any:
        return call_result.GetLocalListVersion(self.sim.local_list_version)

    @on("ClearCache")
    def _sim201_clear_cache(self, **_: Any) -> Any:
        self.sim.auth_cache.clear()
        return call_result.ClearCache("Accepted")


add_followups(
    Peer201,
    (
        "RequestStartTransaction", "RequestStopTransaction", "SetChargingProfile", "GetBaseReport",
        "ClearChargingProfile", "ChangeAvailability", "UnlockConnector", "Reset", "TriggerMessage",
    ),
)  # fmt: skip
Charger201.peer_class = Peer201
