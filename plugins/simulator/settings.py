"""Settings of a simulated charger as the CSMS sees them: 1.6 configuration keys, 2.0.1 variables.

Writable ones map onto SimCharger attributes; the rest report fixed, realistic values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plugins.simulator.commands import MAX_STACK_LEVEL
from plugins.simulator.meter import MEASURANDS

if TYPE_CHECKING:
    from plugins.simulator.charger import SimCharger

VENDOR, MODEL, FIRMWARE = "evhub", "SimCharger", "evhub-sim 1.0"


@dataclass(frozen=True, slots=True)
class Setting:
    """A 1.6 configuration key or 2.0.1 variable: a charger attribute, or a read-only value."""

    attr: str | None = None  # writable: the SimCharger attribute behind it
    kind: type = int  # bool | int for writable settings
    fixed: str | Callable[[SimCharger], str] = ""

    @property
    def readonly(self) -> bool:
        return self.attr is None

    def get(self, sim: SimCharger) -> str:
        if self.attr is None:
            return self.fixed(sim) if callable(self.fixed) else self.fixed
        value = getattr(sim, self.attr)
        return ("true" if value else "false") if self.kind is bool else str(int(value))

    def set(self, sim: SimCharger, raw: str) -> bool:
        """False when read-only or the value is invalid."""
        if self.attr is None:
            return False
        if self.kind is bool:
            if raw.strip().lower() not in ("true", "false"):
                return False
            setattr(sim, self.attr, raw.strip().lower() == "true")
            return True
        try:
            value = int(raw)
        except ValueError:
            return False
        if value <= 0:
            return False
        setattr(sim, self.attr, value)
        return True


def _fixed(value: str) -> Setting:
    return Setting(fixed=value)


CONFIGURATION: dict[str, Setting] = {
    "AllowOfflineTxForUnknownId": Setting("allow_offline_unknown", bool),
    "AuthorizationCacheEnabled": _fixed("true"),
    "AuthorizeRemoteTxRequests": Setting("authorize_remote", bool),
    "ChargeProfileMaxStackLevel": _fixed(str(MAX_STACK_LEVEL)),
    "ChargingScheduleAllowedChargingRateUnit": _fixed("Current,Power"),
    "ChargingScheduleMaxPeriods": _fixed("24"),
    "ClockAlignedDataInterval": _fixed("0"),
    "ConnectionTimeOut": _fixed("60"),
    "GetConfigurationMaxKeys": _fixed("50"),
    "HeartbeatInterval": Setting("heartbeat", int),
    "LocalAuthListEnabled": Setting("local_list_enabled", bool),
    "LocalAuthListMaxLength": _fixed("1000"),
    "LocalAuthorizeOffline": Setting("local_authorize_offline", bool),
    "LocalPreAuthorize": Setting("local_pre_authorize", bool),
    "MaxChargingProfilesInstalled": _fixed("10"),
    "MeterValueSampleInterval": Setting("meter_interval", int),
    "MeterValuesAlignedData": _fixed(""),
    "MeterValuesSampledData": _fixed(",".join(MEASURANDS)),
    "NumberOfConnectors": Setting(fixed=lambda sim: str(len(sim.connectors))),
    "ResetRetries": _fixed("1"),
    "SendLocalListMaxLength": _fixed("1000"),
    "StopTransactionOnEVSideDisconnect": _fixed("true"),
    "StopTransactionOnInvalidId": Setting("stop_on_invalid_id", bool),
    "StopTxnAlignedData": _fixed(""),
    "StopTxnSampledData": _fixed("Energy.Active.Import.Register"),
    "SupportedFeatureProfiles": _fixed("Core,LocalAuthListManagement,RemoteTrigger,SmartCharging"),
    "TransactionMessageAttempts": _fixed("3"),
    "TransactionMessageRetryInterval": _fixed("60"),
    "UnlockConnectorOnEVSideDisconnect": _fixed("true"),
    "WebSocketPingInterval": _fixed("0"),
}

# 2.0.1: (component, variable) -> setting; a minimal device model.
VARIABLES: dict[tuple[str, str], Setting] = {
    ("OCPPCommCtrlr", "HeartbeatInterval"): Setting("heartbeat", int),
    ("SampledDataCtrlr", "TxUpdatedInterval"): Setting("meter_interval", int),
    ("SampledDataCtrlr", "TxUpdatedMeasurands"): _fixed(",".join(MEASURANDS)),
    ("AlignedDataCtrlr", "Interval"): _fixed("0"),
    ("AuthCtrlr", "AuthorizeRemoteStart"): Setting("authorize_remote", bool),
    ("AuthCtrlr", "LocalAuthorizeOffline"): Setting("local_authorize_offline", bool),
    ("AuthCtrlr", "LocalPreAuthorize"): Setting("local_pre_authorize", bool),
    ("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): Setting("allow_offline_unknown", bool),
    ("LocalAuthListCtrlr", "Enabled"): Setting("local_list_enabled", bool),
    ("TxCtrlr", "StopTxOnInvalidId"): Setting("stop_on_invalid_id", bool),
    ("SmartChargingCtrlr", "Enabled"): _fixed("true"),
    ("SmartChargingCtrlr", "ProfileStackLevel"): _fixed(str(MAX_STACK_LEVEL)),
    ("SmartChargingCtrlr", "RateUnit"): _fixed("A,W"),
    ("ChargingStation", "Model"): _fixed(MODEL),
    ("ChargingStation", "VendorName"): _fixed(VENDOR),
}
COMPONENTS = {component for component, _ in VARIABLES}


def base_report(sim: SimCharger) -> list[dict[str, Any]]:
    """2.0.1 NotifyReport data (camelCase) for GetBaseReport: the variables above, per EVSE
    its availability, per connector its type and phases."""

    def item(component: dict[str, Any], name: str, value: str, writable: bool) -> dict[str, Any]:
        mutability = "ReadWrite" if writable else "ReadOnly"
        attribute = {"type": "Actual", "value": value, "mutability": mutability}
        return {
            "component": component,
            "variable": {"name": name},
            "variableAttribute": [attribute],
        }

    data = [
        item({"name": component}, variable, setting.get(sim), not setting.readonly)
        for (component, variable), setting in VARIABLES.items()
    ]
    for conn in sim.connectors:
        evse = {"name": "EVSE", "evse": {"id": conn.id}}
        data.append(item(evse, "AvailabilityState", str(conn.status), False))
        connector = {"name": "Connector", "evse": {"id": conn.id, "connectorId": 1}}
        data.append(item(connector, "ConnectorType", "cType2", False))
        data.append(item(connector, "SupplyPhases", str(sim.spec.phases), False))
    return data


def lookup(item: dict[str, Any]) -> tuple[str, Setting | None]:
    """A GetVariables/SetVariables item -> (attributeStatus, the setting if Accepted)."""
    component, variable = item["component"]["name"], item["variable"]["name"]
    if item.get("attribute_type", "Actual") != "Actual":
        return "NotSupportedAttributeType", None
    setting = VARIABLES.get((component, variable))
    if setting is not None:
        return "Accepted", setting
    return ("UnknownVariable" if component in COMPONENTS else "UnknownComponent"), None
