"""One simulated connector: its status, the vehicle plugged in, the transaction and the meter.

The meter integrates the power set at the last refresh over clock time; nothing here sends messages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from plugins.simulator.physics import CHARGING, SUSPENDED_EV, SUSPENDED_EVSE, Draw, Vehicle


class Status(enum.StrEnum):
    """OCPP 1.6 connector statuses; 2.0.1 maps them onto connector status + charging state."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = CHARGING
    SUSPENDED_EV = SUSPENDED_EV
    SUSPENDED_EVSE = SUSPENDED_EVSE
    FINISHING = "Finishing"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


@dataclass(slots=True)
class Transaction:
    local_id: str  # 2.0.1 transactionId; in 1.6 only ours until the CSMS assigns `ocpp_id`
    id_tag: str | None
    started: datetime
    meter_start: int
    remote_start_id: int | None = None
    ocpp_id: Any = None
    id_type: str = "ISO14443"
    charging_state: str | None = None  # 2.0.1: the last one reported
    seq_no: int = 0
    charging_s: float = 0.0
    stopped: datetime | None = None
    meter_stop: int | None = None
    reason: str | None = None

    def next_seq(self) -> int:
        seq, self.seq_no = self.seq_no, self.seq_no + 1
        return seq


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the connector's meter, protocol-neutral."""

    timestamp: datetime
    energy_wh: int  # Energy.Active.Import.Register
    power_w: float
    currents: tuple[float, float, float]
    voltages: tuple[float, float, float]
    soc: float | None


class Connector:
    __slots__ = (
        "amps",
        "depart_timer",
        "energy_wh",
        "error_code",
        "finished",
        "id",
        "operative",
        "pending_inoperative",
        "phases_used",
        "state",
        "status",
        "tx",
        "updated",
        "vehicle",
        "visit_timer",
        "visits",
    )

    def __init__(self, connector_id: int, energy_wh: float, now: datetime) -> None:
        self.id = connector_id
        self.status = Status.AVAILABLE
        self.error_code: str | None = None  # set while faulted
        self.operative = True
        self.pending_inoperative = False  # ChangeAvailability(Inoperative) during a transaction
        self.vehicle: Vehicle | None = None
        self.tx: Transaction | None = None
        self.finished = False  # the transaction ended, the vehicle is still plugged in
        self.energy_wh = energy_wh
        self.amps = 0.0
        self.phases_used = 0
        self.state = SUSPENDED_EVSE  # physics state of the last draw
        self.updated = now
        self.visits = 0
        self.visit_timer: Any = None
        self.depart_timer: Any = None

    def power(self, voltages: tuple[float, float, float]) -> float:
        return sum(self.amps * voltages[i] for i in range(self.phases_used))

    def advance(self, now: datetime, voltages: tuple[float, float, float]) -> None:
        """Integrate the present power up to `now`; a vehicle stops drawing at its target SoC."""
        seconds = (now - self.updated).total_seconds()
        self.updated = now
        if seconds <= 0 or self.amps <= 0:
            return
        wh = self.power(voltages) * seconds / 3600
        if self.vehicle is not None:
            need = self.vehicle.wh_to_target()
            if wh >= need:  # full part-way: power dropped to zero at that moment
                seconds *= need / wh if wh else 0.0
                wh = need
            self.vehicle.charge(wh)
        if self.tx is not None:
            self.tx.charging_s += seconds
        self.energy_wh += wh

    def apply(self, result: Draw) -> None:
        self.amps, self.phases_used, self.state = result.amps, result.phases, result.state

    def stop_drawing(self) -> None:
        self.amps, self.state = 0.0, SUSPENDED_EVSE

    def derived_status(self) -> Status:
        if self.error_code is not None:
            return Status.FAULTED
        if self.tx is not None:
            return Status(self.state)
        if not self.operative:
            return Status.UNAVAILABLE
        if self.vehicle is None:
            return Status.AVAILABLE
        return Status.FINISHING if self.finished else Status.PREPARING

    def sample(self, now: datetime, voltages: tuple[float, float, float]) -> Sample:
        currents = tuple(self.amps if i < self.phases_used else 0.0 for i in range(3))
        return Sample(
            timestamp=now,
            energy_wh=round(self.energy_wh),
            power_w=round(self.power(voltages), 1),
            currents=currents,  # type: ignore[arg-type]
            voltages=voltages,
            soc=round(self.vehicle.soc, 1) if self.vehicle else None,
        )

    def as_dict(self, voltages: tuple[float, float, float]) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": str(self.status),
            "error_code": self.error_code,
            "power_w": round(self.power(voltages), 1),
            "energy_wh": round(self.energy_wh),
            "vehicle": self.vehicle.as_dict() if self.vehicle else None,
            "transaction": (self.tx.ocpp_id or self.tx.local_id) if self.tx else None,
        }
