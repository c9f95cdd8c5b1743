"""Read the tariff files of Caltech's `acnportal` (US utility TOU tariffs) as our TOU rules.

Each schedule entry (an MM-DD date range, a day mask, hour boundaries with a $/kWh price each and a
$/kW demand charge) becomes a season plus one period per hour range; demand charges are grouped.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from plugins.tariffs.tou import RULES_SCHEMA, month_day

DOW_MASKS = {"ALL": [], "WEEKDAYS": ["mon", "tue", "wed", "thu", "fri"], "WEEKENDS": ["sat", "sun"]}

_HOURS = vol.All(vol.Coerce(float), vol.Range(min=0, max=24))
_ENTRY = vol.Schema(
    {
        vol.Required("id"): vol.Coerce(str),
        vol.Required("effective_start"): month_day,
        vol.Required("effective_end"): month_day,
        vol.Required("dow_mask"): vol.In(
            tuple(DOW_MASKS), msg=f"expected one of {list(DOW_MASKS)}"
        ),
        vol.Required("times"): vol.All([_HOURS], vol.Length(min=1)),
        vol.Required("tariffs"): vol.All([vol.Coerce(float)], vol.Length(min=1)),
        vol.Optional("demand_charge", default=0.0): vol.All(vol.Coerce(float), vol.Range(min=0)),
    },
    extra=vol.ALLOW_EXTRA,
)
ACNPORTAL_SCHEMA = vol.Schema(
    {vol.Required("name"): str, vol.Required("schedule"): vol.All([_ENTRY], vol.Length(min=1))},
    extra=vol.ALLOW_EXTRA,
)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "entry"


def _hhmm(hours: float) -> str:
    minutes = round(hours * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _check_entry(entry: Mapping[str, Any]) -> None:
    times, tariffs = entry["times"], entry["tariffs"]
    if len(times) != len(tariffs):
        raise vol.Invalid(
            f"{len(times)} times but {len(tariffs)} tariffs: one price per time", path=["tariffs"]
        )
    if any(b <= a for a, b in itertools.pairwise(times)) or times[-1] >= 24:
        raise vol.Invalid("times must rise, from 0 to below 24", path=["times"])


def rules_from_acnportal(doc: Any) -> dict[str, Any]:
    """An acnportal tariff document as a validated TOU rules mapping (see tou.RULES_SCHEMA).

    Raises vol.Invalid (with the key path) when the document is not in that format.
    """
    doc = ACNPORTAL_SCHEMA(doc)
    seasons: dict[tuple[tuple[int, int], tuple[int, int]], str] = {}
    periods: list[dict[str, Any]] = []
    rates: dict[float, list[str]] = {}
    for i, entry in enumerate(doc["schedule"]):
        try:
            _check_entry(entry)
        except vol.Invalid as err:
            raise vol.Invalid(err.msg, path=["schedule", i, *err.path]) from None
        span = (entry["effective_start"], entry["effective_end"])
        if span not in seasons:
            # "Summer-Weekday" and "Summer-Weekend" share the season "summer".
            name = _slug(entry["id"].split("-")[0])
            seasons[span] = name if name not in seasons.values() else f"{_slug(entry['id'])}_{i}"
        season = seasons[span]
        days = DOW_MASKS[entry["dow_mask"]]
        times = entry["times"]
        for k, (begin, price) in enumerate(zip(times, entry["tariffs"], strict=True)):
            period: dict[str, Any] = {
                "name": f"{_slug(entry['id'])}_{k + 1}",
                "seasons": [season],
                "start": _hhmm(begin),
                "end": _hhmm(times[k + 1] if k + 1 < len(times) else 24),
                "price": price,
            }
            if days:
                period["days"] = days
            periods.append(period)
        seasons_with_rate = rates.setdefault(entry["demand_charge"], [])
        if season not in seasons_with_rate:
            seasons_with_rate.append(season)
    rates.pop(0.0, None)
    # acnportal charges the rate of the schedule in force on the peak's billing period, by
    # season: one charge per rate, limited to its seasons unless it holds all year.
    charges = [
        {"name": f"demand_{i + 1}", "rate": rate, "basis": "monthly"}
        | ({"seasons": names} if set(names) != set(seasons.values()) else {})
        for i, (rate, names) in enumerate(rates.items())
    ]
    rules = {
        "seasons": {name: {"start": _md(a), "end": _md(b)} for (a, b), name in seasons.items()},
        "periods": periods,
        "demand_charges": charges,
    }
    return RULES_SCHEMA(rules)


def _md(md: tuple[int, int]) -> str:
    return f"{md[0]:02d}-{md[1]:02d}"
