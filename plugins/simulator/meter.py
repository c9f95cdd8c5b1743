"""Meter readings on the wire: the sampled values of a Sample in OCPP 1.6 and 2.0.1 shape.

Every reading carries the register, power, current and voltage per phase, and the vehicle's SoC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from plugins.simulator.connector import Sample

MEASURANDS = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    "SoC",
)
_PHASES = ("L1", "L2", "L3")
_VOLTAGE_PHASES = ("L1-N", "L2-N", "L3-N")


def iso(when: datetime) -> str:
    """OCPP timestamps: UTC, milliseconds, Z."""
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meter_value_16(sample: Sample, context: str) -> dict[str, Any]:
    """One 1.6 MeterValue: register, power, current and voltage per phase, SoC."""

    def value(v: str, measurand: str, unit: str, **extra: str) -> dict[str, Any]:
        return {"value": v, "context": context, "measurand": measurand, "unit": unit, **extra}

    values = [
        value(str(sample.energy_wh), MEASURANDS[0], "Wh", location="Outlet"),
        value(f"{sample.power_w:.1f}", "Power.Active.Import", "W", location="Outlet"),
        *(
            value(f"{a:.2f}", "Current.Import", "A", phase=p)
            for a, p in zip(sample.currents, _PHASES, strict=True)
        ),
        *(
            value(f"{v:.1f}", "Voltage", "V", phase=p)
            for v, p in zip(sample.voltages, _VOLTAGE_PHASES, strict=True)
        ),
    ]
    if sample.soc is not None:
        values.append(value(f"{sample.soc:.1f}", "SoC", "Percent", location="EV"))
    return {"timestamp": iso(sample.timestamp), "sampledValue": values}


def meter_value_201(sample: Sample, context: str) -> dict[str, Any]:
    """One 2.0.1 MeterValue: register, power, current and voltage per phase, SoC."""

    def value(v: float, measurand: str, unit: str, **extra: str) -> dict[str, Any]:
        return {
            "value": v,
            "context": context,
            "measurand": measurand,
            "unitOfMeasure": {"unit": unit},
            **extra,
        }

    values = [
        value(float(sample.energy_wh), MEASURANDS[0], "Wh", location="Outlet"),
        value(sample.power_w, "Power.Active.Import", "W", location="Outlet"),
        *(
            value(a, "Current.Import", "A", phase=p)
            for a, p in zip(sample.currents, _PHASES, strict=True)
        ),
        *(
            value(v, "Voltage", "V", phase=p)
            for v, p in zip(sample.voltages, _VOLTAGE_PHASES, strict=True)
        ),
    ]
    if sample.soc is not None:
        values.append(value(sample.soc, "SoC", "Percent", location="EV"))
    return {"timestamp": iso(sample.timestamp), "sampledValue": values}
