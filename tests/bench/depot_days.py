"""Depot days for the planning benchmark: a fleet back from its rounds, planned on real prices.

Deterministic: spice_ev fleet statistics, Nord Pool SE3 day-ahead prices, SCE's demand charge.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hub.charging.site import SITE_SCHEMA, Site
from plugins.smart_charging.optimizer import SLOT, PlanProblem, VehicleNeed

SHARED = Path(__file__).resolve().parents[3] / "shared"
DATA = SHARED / "data"
FLEET = DATA / "fleet" / "vehicle_types.json"
DAYAHEAD = DATA / "tariffs" / "dayahead" / "nordpool_dayahead_2024-11-05.json"
DEMAND = DATA / "tariffs" / "acnportal" / "sce_tou_ev_4_march_2019.json"

AREA = "SE3"  # Nord Pool bidding area (SE4 has a 0.0 hole at 19:00 CET in this answer)
CET = timezone(timedelta(hours=1), "CET")  # the day-ahead answer's delivery day; no DST in Nov
START_HOUR = 11  # plan from 11:00 CET: before the first vehicle can be back (07:00 + 4.28 h)
SLOTS = 96
VOLTS = 230.0
PHASES = 3
ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2")
GRID_SHARE = 0.6  # grid connection: this share of the sum of the chargers' ratings
PANEL_SHARE = 0.7  # each panel: of its chargers'
CIRCUIT_SHARE = 0.8  # each circuit: of its chargers'
PANEL_SIZE = 20  # chargers per panel, at most
CIRCUIT_SIZE = 5  # chargers per circuit, at most


@dataclass(frozen=True)
class VehicleType:
    """A fleet vehicle type with driving statistics (spice_ev `vehicle_types.json`)."""

    name: str
    capacity_kwh: float
    kwh_per_100km: float  # spice_ev "mileage": consumption, kWh per 100 km
    max_kw: float  # the charging curve's highest point
    departure_h: tuple[float, float, float, float]  # avg, std, min, max; hours after midnight
    driving_h: tuple[float, float, float, float]
    distance_km: tuple[float, float, float, float]
    no_drive_days: frozenset[int]  # weekdays, Monday = 0


def _read(path: Path) -> Any:
    if not path.is_file():
        pytest.skip(f"reference data missing: {path} (the benchmark reads ../shared/data)")
    return json.loads(path.read_text())


def _clock(text: str) -> float:
    hours, minutes = text.split(":")
    return int(hours) + int(minutes) / 60


def _stats(raw: Mapping[str, Any], name: str) -> tuple[float, float, float, float]:
    avg, std, low, high = (float(raw[f"{k}_{name}"]) for k in ("avg", "std", "min", "max"))
    return avg, std, low, high


def vehicle_types() -> list[VehicleType]:
    """The real types of the file: its two templates (capacity 0, no statistics) are left out."""
    types = []
    for key, raw in _read(FLEET).items():
        stats = raw.get("statistical_values")
        if not stats or raw["capacity"] <= 0:
            continue
        dep, drive, dist = stats["departure"], stats["duration_in_hours"], stats["distance_in_km"]
        types.append(
            VehicleType(
                name=key,
                capacity_kwh=float(raw["capacity"]),
                kwh_per_100km=float(raw["mileage"]),
                max_kw=float(max(kw for _, kw in raw["charging_curve"])),
                departure_h=(
                    _clock(dep["avg_start"]),
                    float(dep["std_start_in_hours"]),
                    _clock(dep["min_start"]),
                    _clock(dep["max_start"]),
                ),
                driving_h=_stats(drive, "driving"),
                distance_km=_stats(dist, "distance"),
                no_drive_days=frozenset(raw.get("no_drive_days", ())),
            )
        )
    return types


def _draw(rng: random.Random, stats: Sequence[float]) -> float:
    """A normal draw truncated to [min, max] by rejection: deterministic for a seeded rng."""
    avg, std, low, high = stats
    for _ in range(1000):
        if low <= (x := rng.gauss(avg, std)) <= high:
            return x
    return min(max(avg, low), high)


def day_start() -> datetime:
    """Midnight CET of the day-ahead answer's delivery day."""
    day = datetime.fromisoformat(_read(DAYAHEAD)["deliveryDateCET"])
    return day.replace(tzinfo=CET)


def quarter_hour_prices(start: datetime, slots: int = SLOTS) -> list[float]:
    """SE3 prices per kWh (SEK) for each slot from `start`, each hour's price for its 4 quarters.

    The answer holds one day: slots past its end wrap round, so the next morning repeats this
    morning's prices (a typical day, not a forecast).
    """
    answer = _read(DAYAHEAD)
    hourly = {
        datetime.fromisoformat(e["deliveryStart"].replace("Z", "+00:00")): e["entryPerArea"][AREA]
        for e in answer["multiAreaEntries"]
    }
    first = day_start()
    assert len(hourly) == 24 and min(hourly) == first, "expected one whole CET day of hours"
    out = []
    for i in range(slots):
        since = (start + i * SLOT - first) % timedelta(days=1)
        hour = first + timedelta(hours=since // timedelta(hours=1))
        out.append(hourly[hour] / 1000)  # SEK/MWh -> SEK/kWh
    return out


def demand_charge() -> float:
    """SCE TOU-EV-4's demand charge per kW; the hub also takes the highest rate of a tariff."""
    return max(float(s["demand_charge"]) for s in _read(DEMAND)["schedule"])


@dataclass(frozen=True)
class Bay:
    """One charger bay of the depot: its vehicle's type and its own rating."""

    id: str
    amps: int  # per phase, 3-phase AC
    rotation: str


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _rating(amps: Sequence[int], share: float, ceiling: int) -> int:
    """A breaker for `share` of its chargers' sum: at least the largest, at most the one above."""
    return min(ceiling, max(max(amps), math.ceil(share * sum(amps))))


def depot_site(bays: Sequence[Bay], grid_share: float = GRID_SHARE) -> Site:
    """Grid -> panels of up to 20 chargers -> circuits of up to 5, each rated below its sum."""
    total = sum(b.amps for b in bays)
    grid_kw = grid_share * total * PHASES * VOLTS / 1000
    grid_a = math.ceil(grid_kw * 1000 / (PHASES * VOLTS))  # the kW rating is the tighter one
    panels: list[dict[str, Any]] = []
    for p, group in enumerate(_chunks(bays, PANEL_SIZE)):
        panel_a = _rating([b.amps for b in group], PANEL_SHARE, grid_a)
        circuits = []
        for c, members in enumerate(_chunks(group, CIRCUIT_SIZE)):
            chargers = [
                {"id": b.id, "phases": 3, "phase_rotation": b.rotation, "max_current": b.amps}
                for b in members
            ]
            amps = _rating([b.amps for b in members], CIRCUIT_SHARE, panel_a)
            circuits.append({"id": f"p{p:02d}_c{c}", "max_current": amps, "chargers": chargers})
        panels.append({"id": f"p{p:02d}", "max_current": panel_a, "circuits": circuits})
    conf = {
        "id": "depot",
        "phases": PHASES,
        "voltage": VOLTS,
        "max_current": grid_a,
        "max_power_kw": round(grid_kw, 3),
        "panels": panels,
    }
    return Site.from_config(SITE_SCHEMA(conf))


def depot_day(vehicles: int, *, seed: int = 2024, grid_share: float = GRID_SHARE) -> PlanProblem:
    """`vehicles` vehicles back from the day's rounds, to be ready for tomorrow's: 96 slots.

    Each draws a type, then (truncated normal within the file's min/max) today's departure,
    driving time and distance: it is back at departure + driving, needs distance x consumption
    (at most its battery), and leaves at tomorrow's drawn departure time, or on the first day
    after that its type drives. Vehicle i is the same in every size of depot (one rng, in order).
    """
    types = vehicle_types()
    rng = random.Random(seed)
    midnight = day_start()
    start = midnight + timedelta(hours=START_HOUR)
    needs: list[VehicleNeed] = []
    bays: list[Bay] = []
    for i in range(vehicles):
        kind = rng.choice(types)
        left = _draw(rng, kind.departure_h)
        back = left + _draw(rng, kind.driving_h)
        km = _draw(rng, kind.distance_km)
        nxt = midnight + timedelta(days=1)
        while nxt.weekday() in kind.no_drive_days:
            nxt += timedelta(days=1)
        departure = nxt + timedelta(hours=_draw(rng, kind.departure_h))
        if midnight.weekday() in kind.no_drive_days:  # stayed at the depot all day
            arrival, kwh = start, 0.0
        else:
            arrival = midnight + timedelta(hours=back)
            kwh = min(kind.capacity_kwh, km * kind.kwh_per_100km / 100)
        amps = math.ceil(kind.max_kw * 1000 / (PHASES * VOLTS))  # 11 kW: 16 A, 22 kW: 32 A
        bay = Bay(f"bay_{i:04d}", amps, ROTATIONS[i % len(ROTATIONS)])
        bays.append(bay)
        needs.append(
            VehicleNeed(
                id=f"{kind.name}_{i:04d}",
                charger=bay.id,
                arrival=_minute(arrival),
                departure=_minute(departure),
                energy_kwh=round(kwh, 3),
                max_kw=kind.max_kw,
            )
        )
    return PlanProblem(
        start=start,
        slots=SLOTS,
        site=depot_site(bays, grid_share),
        import_price=quarter_hour_prices(start),
        vehicles=needs,
        demand_charge=demand_charge(),
    )


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def describe(problem: PlanProblem) -> Mapping[str, float]:
    """A few figures of a depot day, to print next to its timings."""
    site = problem.site.root
    kwh = sum(v.energy_kwh for v in problem.vehicles)
    return {
        "vehicles": len(problem.vehicles),
        "energy_kwh": kwh,
        "charger_kw": sum(v.max_kw for v in problem.vehicles),
        "grid_kw": site.max_power_kw or math.inf,
        "panels": len(site.children),
    }
