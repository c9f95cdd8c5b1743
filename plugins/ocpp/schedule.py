"""Shared OCPP shapes: timestamps as chargers expect them, and a hub ChargingSchedule as an
OCPP chargingSchedule in a unit the charger takes (both versions use the same periods)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hub.charging.charger import ChargingSchedule

NOMINAL_VOLTAGE = 230.0  # V per phase, for converting between A and W when a charger takes one


def iso(when: datetime) -> str:
    """RFC 3339 in UTC with a Z, the spelling every charger firmware parses."""
    return when.isoformat().replace("+00:00", "Z")


def charging_schedule(
    schedule: ChargingSchedule, rate_units: tuple[str, ...], phases: int
) -> dict[str, Any]:
    """chargingRateUnit, chargingSchedulePeriod, startSchedule and duration of `schedule`,
    converted at the nominal voltage when the charger does not take the schedule's unit."""
    unit, factor = str(schedule.unit), 1.0
    if unit not in rate_units:
        factor = 1 / (NOMINAL_VOLTAGE * phases) if unit == "W" else NOMINAL_VOLTAGE * phases
        unit = "A" if unit == "W" else "W"
    out: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {
                "startPeriod": int(p.offset / timedelta(seconds=1)),
                "limit": round(p.limit * factor, 1),
                **({"numberPhases": p.phases} if p.phases else {}),
            }
            for p in schedule.periods
        ],
    }
    if schedule.start is not None:
        out["startSchedule"] = iso(schedule.start)
    if schedule.duration is not None:
        out["duration"] = int(schedule.duration / timedelta(seconds=1))
    return out
