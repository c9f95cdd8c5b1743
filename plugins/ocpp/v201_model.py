"""OCPP 2.0.1 station model: per-EVSE status, the device model read from NotifyReport, and the
translations (status, idTokenInfo, charging schedules) the 2.0.1 adapter shares with its helpers.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.charging.auth import AuthorizationResult
from hub.charging.charger import ChargingSchedule, ConnectorStatus
from hub.charging.session import REGISTER, MeterReading, Session
from plugins.ocpp.schedule import charging_schedule as ocpp_schedule
from plugins.ocpp.schedule import iso
from plugins.ocpp.transactions import parse_timestamp

if TYPE_CHECKING:
    from plugins.ocpp.station import Station

_LOGGER = logging.getLogger(__name__)

STATE_KEY = "ocpp2.0.1"  # station.extra key of the V201State: it must outlive one connection
MAX_CONFIGURATION = 10_000  # device-model entries kept per station (a FullInventory is ~1-3k)
MAX_TRANSACTIONS = 32  # transactions whose seqNos are remembered per station (active first)
MAX_ANSWERS = 64  # answers kept per transaction for retries; older seqNos are re-answered
MAX_SEEN = 4096  # seqNos remembered per transaction, so an old retry writes nothing
REMOTE_START_TTL = timedelta(minutes=10)
RATE_UNIT_KEY = "SmartChargingCtrlr/RateUnit"

_STATUS = {
    "Available": ConnectorStatus.AVAILABLE,
    "Reserved": ConnectorStatus.RESERVED,
    "Unavailable": ConnectorStatus.UNAVAILABLE,
    "Faulted": ConnectorStatus.FAULTED,
}
_CHARGING_STATE = {
    "Charging": ConnectorStatus.CHARGING,
    "SuspendedEV": ConnectorStatus.SUSPENDED_EV,
    "SuspendedEVSE": ConnectorStatus.SUSPENDED_EVSE,
    "EVConnected": ConnectorStatus.PREPARING,
    "Idle": ConnectorStatus.PREPARING,
}


@dataclass(slots=True)
class EvseState:
    """What the station said about one EVSE: its connectors' statuses and the charging state."""

    connectors: dict[int, str | None] = field(default_factory=dict)  # connector -> status
    charging_state: str | None = None  # of the transaction on it (TransactionEvent)
    finished: bool = False  # a transaction ended while the vehicle is still plugged in

    def status(self) -> ConnectorStatus | None:
        """The 1.6-style status of the EVSE entity; None when the station has said nothing.

        2.0.1 "Occupied" only says a vehicle is plugged in: the transaction's chargingState
        tells charging from suspended, and an ended transaction makes it Finishing.
        """
        raw = {s for s in self.connectors.values() if s}
        if "Occupied" in raw or (not raw and self.charging_state):
            if self.charging_state:
                return _CHARGING_STATE[self.charging_state]
            return ConnectorStatus.FINISHING if self.finished else ConnectorStatus.PREPARING
        if self.charging_state == "Idle" and "Available" in raw:
            return ConnectorStatus.PREPARING  # authorized, waiting for the cable
        # A multi-connector EVSE serves one vehicle: any free connector makes it available.
        for name in ("Reserved", "Available", "Unavailable", "Faulted"):
            if name in raw:
                return _STATUS[name]
        return None


@dataclass(slots=True)
class TxState:
    """One transaction's message bookkeeping: answers by seqNo, gaps, readings already stored."""

    session: Session
    answers: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)
    seen: set[int] = field(default_factory=set)
    last_seq: int | None = None
    missing: set[int] = field(default_factory=set)
    # Set only when the transaction was already recorded before this state existed (a hub
    # restart): the identities of its stored readings, so a retried event adds none twice.
    recorded: set[tuple[Any, ...]] | None = None

    def remember(self, seq: int, answer: dict[str, Any]) -> None:
        self.answers[seq] = answer
        if len(self.answers) > MAX_ANSWERS:
            self.answers.popitem(last=False)


@dataclass(slots=True)
class V201State:
    """Per-station 2.0.1 state kept in `station.extra[STATE_KEY]`: survives reconnects, so a
    retry on a new connection (the usual way an answer gets lost) is still recognised."""

    evses: dict[int, EvseState] = field(default_factory=dict)
    transactions: OrderedDict[str, TxState] = field(default_factory=OrderedDict)
    remote_starts: OrderedDict[int, tuple[str, datetime]] = field(default_factory=OrderedDict)
    report_request: int | None = None

    def evse(self, number: int) -> EvseState:
        return self.evses.setdefault(number, EvseState())

    def tx(self, transaction_id: str) -> TxState | None:
        state = self.transactions.get(transaction_id)
        if state is not None:
            self.transactions.move_to_end(transaction_id)
        return state

    def keep(self, transaction_id: str, state: TxState) -> None:
        self.transactions[transaction_id] = state
        if len(self.transactions) > MAX_TRANSACTIONS:
            # Forget the least recently used transaction, preferring a finished one.
            done = [k for k, v in self.transactions.items() if v.session.stopped_at is not None]
            self.transactions.pop(done[0] if done else next(iter(self.transactions)))


def state_of(station: Station) -> V201State:
    state = station.extra.get(STATE_KEY)
    if not isinstance(state, V201State):
        state = station.extra[STATE_KEY] = V201State()
    return state


def reading_key(r: MeterReading) -> tuple[Any, ...]:
    return (r.timestamp, r.measurand, r.phase, r.location, r.context, r.value, r.unit)


def register_wh(readings: Sequence[MeterReading], context: str, *, last: bool) -> float | None:
    """The outlet's total import register in Wh, preferring samples of `context`: the first
    (meter start) or the last (meter stop) of them; None when the event carries none."""
    found = [
        r for r in readings
        if r.measurand == REGISTER and r.phase is None and r.location in (None, "Outlet")
        and r.unit == "Wh"
    ]  # fmt: skip
    preferred = [r for r in found if r.context == context] or found
    if not preferred:
        return None
    pick = max if last else min
    return pick(preferred, key=lambda r: r.timestamp).value


def id_token_info(result: AuthorizationResult) -> dict[str, Any]:
    """AuthorizationResult -> 2.0.1 IdTokenInfo (every status of ours is a 2.0.1 status)."""
    info: dict[str, Any] = {"status": str(result.status)}
    if result.expiry is not None:
        info["cacheExpiryDateTime"] = iso(result.expiry)
    if result.group_id:
        # A group is the hub's notion, not a card type the station could read.
        info["groupIdToken"] = {"idToken": result.group_id[:36], "type": "Central"}
    return info


# --- device model (NotifyReport) ----------------------------------------------------------------
def variable_key(component: Mapping[str, Any], variable: Mapping[str, Any]) -> str:
    """One flat key per variable, so the configuration reads like 1.6's: "Component[instance]
    @evse.connector/Variable[instance]", e.g. "SmartChargingCtrlr/RateUnit" or "EVSE@1/Power"."""
    comp = component["name"] + (f"[{component['instance']}]" if component.get("instance") else "")
    evse = component.get("evse")
    if evse:
        comp += f"@{evse['id']}" + (f".{evse['connectorId']}" if "connectorId" in evse else "")
    var = variable["name"] + (f"[{variable['instance']}]" if variable.get("instance") else "")
    return f"{comp}/{var}"


def apply_report(station: Station, report: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """Store reported variables in station.configuration and note EVSEs and connectors.

    Returns {evse id: max power in W} for every EVSE the report mentions (0.0 when unknown).
    """
    state, config = state_of(station), station.configuration
    evses: dict[int, float] = {}
    for item in report:
        component, variable = item["component"], item["variable"]
        key = variable_key(component, variable)
        for attr in item["variableAttribute"]:
            name = key if attr.get("type", "Actual") == "Actual" else f"{key}:{attr['type']}"
            if name not in config and len(config) >= MAX_CONFIGURATION:
                _LOGGER.warning("%s: device model over %d entries", station.id, MAX_CONFIGURATION)
                break
            config[name] = attr.get("value")
        evse = component.get("evse")
        if not evse or evse.get("id", 0) <= 0:
            continue
        evses.setdefault(evse["id"], 0.0)
        if component["name"] == "Connector" and "connectorId" in evse:
            state.evse(evse["id"]).connectors.setdefault(evse["connectorId"], None)
        chars = item.get("variableCharacteristics") or {}
        if component["name"] == "EVSE" and variable["name"] == "Power" and "maxLimit" in chars:
            factor = 1000.0 if str(chars.get("unit", "W")).lower() == "kw" else 1.0
            evses[evse["id"]] = float(chars["maxLimit"]) * factor
    units = config.get(RATE_UNIT_KEY)
    if units:
        parts = {u.strip().upper() for u in str(units).split(",")}
        station.rate_units = tuple(u for u in ("A", "W") if u in parts) or station.rate_units
    return evses


def charging_schedule(
    schedule: ChargingSchedule, rate_units: tuple[str, ...], phases: int
) -> dict[str, Any]:
    """A 2.0.1 ChargingScheduleType: the shared periods plus the schedule id 2.0.1 requires."""
    return {"id": 1, **ocpp_schedule(schedule, rate_units, phases)}


_NEEDS_PHASES = {"AC_single_phase": 1, "AC_two_phase": 2, "AC_three_phase": 3}


def ev_needs(needs: Mapping[str, Any]) -> dict[str, Any]:
    """ChargingNeedsType (ISO 15118 via NotifyEVChargingNeeds) as the neutral `ev_*` fields of
    ChargerData: energy in Wh, departure, and the most the vehicle takes in W."""
    out: dict[str, Any] = {"ev_energy_wh": None, "ev_departure": None, "ev_max_power_w": None}
    if "departureTime" in needs:
        out["ev_departure"] = parse_timestamp(needs["departureTime"])
    ac, dc = needs.get("acChargingParameters"), needs.get("dcChargingParameters")
    if ac:
        out["ev_energy_wh"] = float(ac["energyAmount"])
        # ISO 15118-2 gives the EV's AC voltage per phase, but stations are seen sending the
        # line-to-line value (400 V): a value above any phase voltage is taken as line-to-line.
        volts = float(ac["evMaxVoltage"])
        volts = volts / math.sqrt(3) if volts > 260 else volts
        phases = _NEEDS_PHASES.get(needs.get("requestedEnergyTransfer", ""), 3)
        out["ev_max_power_w"] = float(ac["evMaxCurrent"]) * volts * phases
    elif dc:
        if dc.get("energyAmount") is not None:
            out["ev_energy_wh"] = float(dc["energyAmount"])
        elif dc.get("evEnergyCapacity") and dc.get("stateOfCharge") is not None:
            missing = max(0.0, float(dc.get("fullSoC", 100)) - dc["stateOfCharge"])
            out["ev_energy_wh"] = missing / 100 * dc["evEnergyCapacity"]
        power = dc.get("evMaxPower") or float(dc["evMaxCurrent"]) * float(dc["evMaxVoltage"])
        out["ev_max_power_w"] = float(power)
        if dc.get("stateOfCharge") is not None:
            out["soc"] = float(dc["stateOfCharge"])
    return out
