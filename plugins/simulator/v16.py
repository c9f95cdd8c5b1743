"""OCPP 1.6J for simulated chargers: the messages a charger sends and the CSMS calls it answers.

The `ocpp` library's v16 ChargePoint is the peer; handlers answer at once, effects follow the reply.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result

from plugins.simulator.charger import SimCharger
from plugins.simulator.connector import Connector, Sample, Status, Transaction
from plugins.simulator.link import WIRE, Message, OrderedPeer, Outgoing, add_followups
from plugins.simulator.meter import MEASURANDS, iso
from plugins.simulator.meter import meter_value_16 as meter_value
from plugins.simulator.profiles import TX
from plugins.simulator.settings import CONFIGURATION, FIRMWARE, MODEL, VENDOR


class Charger16(SimCharger):
    version = "1.6"
    subprotocol = "ocpp1.6"

    def boot_payload(self) -> Message:
        return "BootNotification", {
            "chargePointModel": MODEL,
            "chargePointVendor": VENDOR,
            "chargePointSerialNumber": self.serial,
            "firmwareVersion": FIRMWARE,
            "meterType": "SimMeter",
        }

    def heartbeat_payload(self) -> Message:
        return "Heartbeat", {}

    def authorize_payload(self, id_tag: str) -> Message:
        return "Authorize", {"idTag": id_tag}

    def authorize_status(self, result: Any) -> str:
        return str((result.id_tag_info or {}).get("status", "Invalid"))

    def send_status(self, connector_id: int, status: str, error_code: str | None) -> None:
        payload = {
            "connectorId": connector_id,
            "errorCode": error_code or "NoError",
            "status": status,
            "timestamp": iso(self.clock.now()),
        }
        self.outbox.put(Outgoing(lambda: ("StatusNotification", payload)))

    def status_changed(self, conn: Connector, old: Status) -> None:
        self.send_status(conn.id, str(conn.status), conn.error_code)

    def report_all_statuses(self) -> None:
        whole = "Available" if any(c.operative for c in self.connectors) else "Unavailable"
        self.send_status(0, whole, None)
        for conn in self.connectors:
            conn.status = conn.derived_status()
            self.send_status(conn.id, str(conn.status), conn.error_code)

    def tx_started(self, conn: Connector, tx: Transaction, trigger: str) -> None:
        payload = {
            "connectorId": conn.id,
            "idTag": tx.id_tag or "",
            "meterStart": tx.meter_start,
            "timestamp": iso(tx.started),
        }

        def answered(result: Any) -> None:
            tx.ocpp_id = result.transaction_id
            status = (result.id_tag_info or {}).get("status")
            if status != "Accepted" and self.stop_on_invalid_id and conn.tx is tx:
                self.end_transaction(conn, "DeAuthorized")

        self.outbox.put(Outgoing(lambda: ("StartTransaction", payload), answered, durable=True))

    def tx_sample(self, conn: Connector, tx: Transaction, sample: Sample) -> None:
        values = [meter_value(sample, "Sample.Periodic")]
        # Built when sent: offline, the transactionId may only come with StartTransaction's answer.
        self.outbox.put(
            Outgoing(
                lambda: _meter_values(conn.id, values, tx.ocpp_id), durable=True, periodic=True
            )
        )

    def tx_ended(self, conn: Connector, tx: Transaction, sample: Sample, reason: str) -> None:
        begin = {
            "timestamp": iso(tx.started),
            "sampledValue": [
                {
                    "value": str(tx.meter_start),
                    "context": "Transaction.Begin",
                    "measurand": MEASURANDS[0],
                    "location": "Outlet",
                    "unit": "Wh",
                }
            ],
        }
        data = [begin, meter_value(sample, "Transaction.End")]

        def build() -> Any:
            if tx.ocpp_id is None:  # its StartTransaction was never answered: nothing to stop
                return None
            payload = {
                "meterStop": sample.energy_wh,
                "timestamp": iso(sample.timestamp),
                "transactionId": tx.ocpp_id,
                "reason": reason,
                "transactionData": data,
            }
            if tx.id_tag:
                payload["idTag"] = tx.id_tag
            return "StopTransaction", payload

        self.outbox.put(Outgoing(build, durable=True))

    def triggered_meter_values(self, conn: Connector) -> None:
        self._refresh()
        values = [meter_value(conn.sample(self.clock.now(), self.voltages), "Trigger")]
        tx_id = conn.tx.ocpp_id if conn.tx else None
        self.outbox.put(Outgoing(lambda: _meter_values(conn.id, values, tx_id)))

    def triggered_boot(self) -> None:
        def answered(result: Any) -> None:
            if result.status == "Accepted" and result.interval:
                self.boot_interval = float(result.interval)

        self.outbox.put(Outgoing(self.boot_payload, answered))


def _meter_values(connector_id: int, values: list[Any], tx_id: Any) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"connectorId": connector_id, "meterValue": values}
    if tx_id is not None:
        payload["transactionId"] = tx_id
    return "MeterValues", payload


class Peer16(OrderedPeer, ChargePoint):
    """The charger end of the line, on the ocpp library; `sim` does the work."""

    def __init__(self, sim: Charger16, connection: Any) -> None:
        super().__init__(sim.id, connection, response_timeout=sim.ctx.response_timeout, logger=WIRE)
        self.sim = sim

    def _connector(self, connector_id: int | None) -> Connector | None:
        if connector_id and 0 < connector_id <= len(self.sim.connectors):
            return self.sim.connector(connector_id)
        return None

    @on("RemoteStartTransaction")
    def _sim16_remote_start(
        self, id_tag: str, connector_id: int | None = None, charging_profile: Any = None, **_: Any
    ) -> Any:
        conn = self.sim.pick_connector(connector_id)
        if conn is None or (
            charging_profile and charging_profile.get("charging_profile_purpose") != TX
        ):
            return call_result.RemoteStartTransaction("Rejected")
        self.sim.after_reply(lambda: self.sim.remote_start(conn, id_tag, None, charging_profile))
        return call_result.RemoteStartTransaction("Accepted")

    @on("RemoteStopTransaction")
    def _sim16_remote_stop(self, transaction_id: int, **_: Any) -> Any:
        conn = self.sim.find_transaction(transaction_id)
        if conn is None:
            return call_result.RemoteStopTransaction("Rejected")
        self.sim.after_reply(lambda: self.sim.end_transaction(conn, "Remote"))
        return call_result.RemoteStopTransaction("Accepted")

    @on("SetChargingProfile")
    def _sim16_set_profile(self, connector_id: int, cs_charging_profiles: Any, **_: Any) -> Any:
        return call_result.SetChargingProfile(
            self.sim.set_profile(connector_id, cs_charging_profiles)
        )

    @on("ClearChargingProfile")
    def _sim16_clear_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **_: Any,
    ) -> Any:
        removed = self.sim.clear_profiles(
            profile_id=id,
            connector_id=connector_id,
            purpose=charging_profile_purpose,
            stack_level=stack_level,
        )
        return call_result.ClearChargingProfile("Accepted" if removed else "Unknown")

    @on("GetCompositeSchedule")
    def _sim16_composite(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        if not 0 <= connector_id <= len(self.sim.connectors):
            return call_result.GetCompositeSchedule("Rejected")
        unit = charging_rate_unit or "A"
        start, periods = self.sim.composite(connector_id, duration, unit)
        schedule = {
            "duration": duration,
            "start_schedule": iso(start),
            "charging_rate_unit": unit,
            "charging_schedule_period": [
                {"start_period": int(s), "limit": limit} for s, limit in periods
            ],
        }
        return call_result.GetCompositeSchedule("Accepted", connector_id, iso(start), schedule)

    @on("ChangeAvailability")
    def _sim16_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        return call_result.ChangeAvailability(
            self.sim.change_availability(connector_id, type == "Operative")
        )

    @on("UnlockConnector")
    def _sim16_unlock(self, connector_id: int, **_: Any) -> Any:
        conn = self._connector(connector_id)
        if conn is None:
            return call_result.UnlockConnector("NotSupported")
        self.sim.after_reply(lambda: self.sim.unlock(conn))
        return call_result.UnlockConnector("Unlocked")

    @on("Reset")
    def _sim16_reset(self, type: str, **_: Any) -> Any:
        self.sim.after_reply(
            lambda: self.sim.reboot("HardReset" if type == "Hard" else "SoftReset")
        )
        return call_result.Reset("Accepted")

    @on("TriggerMessage")
    def _sim16_trigger(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> Any:
        sim = self.sim
        conn = self._connector(connector_id)
        if connector_id and conn is None:
            return call_result.TriggerMessage("Rejected")
        targets = [conn] if conn else sim.connectors
        if requested_message == "StatusNotification":
            if conn is None:
                sim.after_reply(sim.report_all_statuses)
            else:
                sim.after_reply(lambda: sim.send_status(conn.id, str(conn.status), conn.error_code))
        elif requested_message == "Heartbeat":
            sim.after_reply(lambda: sim.outbox.put(Outgoing(sim.heartbeat_payload)))
        elif requested_message == "MeterValues":
            sim.after_reply(lambda: [sim.triggered_meter_values(c) for c in targets])
        elif requested_message == "BootNotification":
            sim.after_reply(sim.triggered_boot)
        else:
            return call_result.TriggerMessage("NotImplemented")
        return call_result.TriggerMessage("Accepted")

    @on("GetConfiguration")
    def _sim16_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        known = [
            {
                "key": k,
                "readonly": CONFIGURATION[k].readonly,
                "value": CONFIGURATION[k].get(self.sim),
            }
            for k in (key or CONFIGURATION)
            if k in CONFIGURATION
        ]
        unknown = [k for k in key or () if k not in CONFIGURATION]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("ChangeConfiguration")
    def _sim16_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        setting = CONFIGURATION.get(key)
        if setting is None:
            return call_result.ChangeConfiguration("NotSupported")
        return call_result.ChangeConfiguration(
            "Accepted" if setting.set(self.sim, value) else "Rejected"
        )

    @on("DataTransfer")
    def _sim16_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> Any:
        if vendor_id != VENDOR:
            return call_result.DataTransfer("UnknownVendorId")
        return call_result.DataTransfer("Accepted", data=data)  # an echo, for round-trip tests

    @on("SendLocalList")
    def _sim16_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[Any] | None = None,
        **_: Any,
    ) -> Any:
        entries = {
            e["id_tag"]: (e.get("id_tag_info") or {}).get("status")
            for e in local_authorization_list or ()
        }
        return call_result.SendLocalList(
            self.sim.update_local_list(list_version, update_type == "Full", entries)
        )

    @on("GetLocalListVersion")
    def _sim16_local_list_version(self, **_: Any) -> Any:
        return call_result.GetLocalListVersion(self.sim.local_list_version)

    @on("ClearCache")
    def _sim16_clear_cache(self, **_: Any) -> Any:
        self.sim.auth_cache.clear()
        return call_result.ClearCache("Accepted")


add_followups(
    Peer16,
    (
        "RemoteStartTransaction", "RemoteStopTransaction", "SetChargingProfile",
        "ClearChargingProfile", "ChangeAvailability", "UnlockConnector", "Reset", "TriggerMessage",
    ),
)  # fmt: skip
Charger16.peer_class = Peer16
