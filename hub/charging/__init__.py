"""The charging domain every plugin shares: chargers, sessions and their energy, the site tree,
and the price/limit/forecast signals. Protocol-neutral: nothing here knows OCPP or Modbus.
"""

from hub.charging.charger import (
    ChargerCapability,
    ChargerData,
    ChargerEntity,
    ChargingLimit,
    ChargingSchedule,
    CommandResult,
    ConnectorStatus,
    NotSupported,
    RateUnit,
    SchedulePeriod,
)
from hub.charging.session import (
    EnergyInterval,
    EnergyMethod,
    EnergyResult,
    MeterReading,
    Session,
    SessionStatus,
    derive_energy,
)
from hub.charging.signals import (
    EVENT_SIGNAL_UPDATED,
    SignalStore,
    Slot,
    TimeSeries,
)
from hub.charging.site import SITE_SCHEMA, ChargerNode, Node, NodeKind, Phase, Site

__all__ = [
    "EVENT_SIGNAL_UPDATED",
    "SITE_SCHEMA",
    "ChargerCapability",
    "ChargerData",
    "ChargerEntity",
    "ChargerNode",
    "ChargingLimit",
    "ChargingSchedule",
    "CommandResult",
    "ConnectorStatus",
    "EnergyInterval",
    "EnergyMethod",
    "EnergyResult",
    "MeterReading",
    "Node",
    "NodeKind",
    "NotSupported",
    "Phase",
    "RateUnit",
    "SchedulePeriod",
    "Session",
    "SessionStatus",
    "SignalStore",
    "Site",
    "Slot",
    "TimeSeries",
    "derive_energy",
]
