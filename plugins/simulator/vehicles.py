"""Vehicle models and the deterministic visit schedule (arrival, dwell, energy need, RFID tag).

A built-in table works anywhere; evspecs.json (emobpy's data) adds real battery sizes if present.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from plugins.simulator.physics import Vehicle

_LOGGER = logging.getLogger(__name__)

# Where the shared reference data lives next to a checkout (../shared/data); optional.
EVSPECS = Path(__file__).resolve().parents[3] / "shared" / "data" / "vehicles" / "evspecs.json"


@dataclass(frozen=True, slots=True)
class VehicleModel:
    name: str
    battery_kwh: float
    max_ac_current: float = 16.0  # per phase, the on-board charger
    phases: int = 3
    max_dc_kw: float = 50.0


# On-board charger figures from the makers' data sheets; enough variety for a realistic mix
# (one- and three-phase, 11 and 22 kW).
BUILTIN_MODELS: tuple[VehicleModel, ...] = (
    VehicleModel("Renault Zoe ZE50", 52.0, 32.0, 3, 50.0),
    VehicleModel("Tesla Model 3 Long Range", 75.0, 16.0, 3, 250.0),
    VehicleModel("Volkswagen ID.3 Pro", 58.0, 16.0, 3, 120.0),
    VehicleModel("Nissan Leaf 40 kWh", 40.0, 32.0, 1, 50.0),
    VehicleModel("Hyundai Kona Electric 64 kWh", 64.0, 16.0, 3, 77.0),
    VehicleModel("Ford E-Transit", 68.0, 16.0, 3, 115.0),
)


def models_from_evspecs(data: dict[str, Any]) -> list[VehicleModel]:
    """Latest year of each model in evspecs.json.

    The file has battery capacity but not the on-board charger, so that is derived from the
    battery as most models of its size have it: < 30 kWh 16 A single-phase, < 50 kWh 32 A
    single-phase, else 16 A three-phase (11 kW); DC power about 1.5 C, at most 150 kW.
    """
    models = []
    for make, family in data.items():
        if make == "fallback_parameters" or not isinstance(family, dict):
            continue
        for model, years in family.items():
            if not isinstance(years, dict) or not years:
                continue
            year = max(years)
            battery = (years[year].get("battery_cap") or {}).get("value")
            if not isinstance(battery, int | float) or battery <= 0:
                continue
            amps, phases = (16.0, 1) if battery < 30 else (32.0, 1) if battery < 50 else (16.0, 3)
            dc = min(150.0, round(battery * 1.5))
            models.append(VehicleModel(f"{make} {model} {year}", float(battery), amps, phases, dc))
    return models


def load_models(path: Path | None = EVSPECS) -> tuple[VehicleModel, ...]:
    """The built-in models plus evspecs.json's when the file exists (read once at start-up)."""
    if path is None or not path.is_file():
        return BUILTIN_MODELS
    try:
        extra = models_from_evspecs(json.loads(path.read_text()))
    except (OSError, ValueError) as err:
        _LOGGER.warning("ignoring vehicle specs %s: %s", path, err)
        return BUILTIN_MODELS
    return BUILTIN_MODELS + tuple(extra)


@dataclass(frozen=True, slots=True)
class ArrivalConfig:
    """How vehicles come and go at each connector; every span is (min, max) seconds or %."""

    enabled: bool = True
    first_within: float = 600.0
    gap: tuple[float, float] = (900.0, 4 * 3600.0)
    dwell: tuple[float, float] = (1800.0, 8 * 3600.0)
    soc: tuple[float, float] = (10.0, 60.0)
    target_soc: tuple[float, float] = (80.0, 100.0)
    remote_share: float = 0.0  # drivers who start by app: they wait for a remote start


class VisitPlanner:
    """Visit n at a connector is a pure function of (seed, connector key, n).

    No per-connector random state is kept (a `random.Random` is 2.5 KB; 20,000 connectors in a
    load test would hold 50 MB of it): each draw seeds a short-lived generator instead.
    """

    __slots__ = ("arrivals", "id_tags", "models", "seed")

    def __init__(
        self,
        seed: int,
        models: Sequence[VehicleModel],
        id_tags: Sequence[str],
        arrivals: ArrivalConfig,
    ) -> None:
        self.seed = seed
        self.models = tuple(models) or BUILTIN_MODELS
        self.id_tags = tuple(id_tags) or tuple(f"SIM{seed % 1000:03d}{i:05X}" for i in range(64))
        self.arrivals = arrivals

    def _rng(self, key: str, n: int, what: str) -> random.Random:
        return random.Random(f"{self.seed}/{key}/{what}/{n}")

    def first_arrival(self, key: str, now: datetime) -> datetime:
        rng = self._rng(key, 0, "first")
        return now + timedelta(seconds=rng.uniform(0, self.arrivals.first_within))

    def next_arrival(self, key: str, n: int, after: datetime) -> datetime:
        rng = self._rng(key, n, "gap")
        return after + timedelta(seconds=rng.uniform(*self.arrivals.gap))

    def vehicle(
        self, key: str, n: int, arrival: datetime, *, tagged: bool | None = None
    ) -> Vehicle:
        """The n-th vehicle at connector `key`, arriving at `arrival`."""
        rng = self._rng(key, n, "vehicle")
        model = self.models[rng.randrange(len(self.models))]
        soc = round(rng.uniform(*self.arrivals.soc), 1)
        target = round(max(soc + 5.0, rng.uniform(*self.arrivals.target_soc)))
        dwell = rng.uniform(*self.arrivals.dwell)
        tag = self.id_tags[rng.randrange(len(self.id_tags))]
        if tagged is None:
            tagged = rng.random() >= self.arrivals.remote_share
        return Vehicle(
            id=f"EV-{rng.randrange(100_000):05d}",
            model=model.name,
            battery_kwh=model.battery_kwh,
            soc=soc,
            target_soc=float(min(100, target)),
            max_ac_current=model.max_ac_current,
            phases=model.phases,
            max_dc_kw=model.max_dc_kw,
            arrival=arrival,
            departure=arrival + timedelta(seconds=dwell),
            id_tag=tag if tagged else None,
        )
