"""The reconciliation report: energy billed vs energy metered per charger, the chargers' meters
vs a site meter, and every CDR of the period recomputed from its readings; differences flagged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

from sqlalchemy import Connection, and_, select

from hub.charging.session import MAX_PLAUSIBLE_POWER_W, PLAUSIBLE_SLACK_WH, REGISTER
from hub.storage.schema import meter_readings, sessions, states
from plugins.billing.cdr import Cdr
from plugins.billing.money import HUNDRED, ZERO, dec, fmt, wh

_WH = {"wh": Decimal(1), "kwh": Decimal(1000), "mwh": Decimal(1_000_000)}


@dataclass(frozen=True, slots=True)
class Thresholds:
    percent: Decimal = Decimal(2)  # a difference above this share of the metered energy...
    wh: Decimal = Decimal(500)  # ...and above this much is flagged
    site_percent: Decimal = Decimal(5)  # cables, the chargers' own consumption, rounding

    def exceeded(self, diff: Decimal, base: Decimal, percent: Decimal | None = None) -> bool:
        share = (percent if percent is not None else self.percent) * abs(base) / HUNDRED
        return abs(diff) > max(self.wh, share)


def _kwh(wh_: Decimal) -> str:
    return fmt((wh_ / 1000).quantize(Decimal("0.001")))


def register_points(
    conn: Connection, start: datetime, end: datetime
) -> dict[tuple[str, int], list[tuple[datetime, Decimal]]]:
    """(charger, connector) -> the register's (time, Wh) points in [start, end]: sampled
    readings (in a session or not) and the sessions' meter start (when not 0) and stop."""
    points: dict[tuple[str, int], list[tuple[datetime, Decimal]]] = {}
    r = meter_readings
    query = select(r.c.charger_id, r.c.connector, r.c.timestamp, r.c.value, r.c.unit).where(
        r.c.measurand == REGISTER,
        r.c.phase.is_(None),
        r.c.timestamp >= start,
        r.c.timestamp <= end,
    )
    for charger, connector, ts, value, unit in conn.execute(query):
        factor = _WH.get((unit or "Wh").strip().lower())
        if factor is not None and _valid(value):
            points.setdefault((charger, connector), []).append((ts, wh(value) * factor))
    s = sessions
    for row in conn.execute(
        select(s).where(
            and_(s.c.started_at <= end, s.c.started_at >= start)
            | and_(s.c.stopped_at <= end, s.c.stopped_at >= start)
        )
    ).mappings():
        key = (row["charger_id"], row["connector"])
        if row["meter_start_wh"] and start <= row["started_at"] <= end:
            points.setdefault(key, []).append((row["started_at"], wh(row["meter_start_wh"])))
        stopped = row["stopped_at"]
        if row["meter_stop_wh"] is not None and stopped is not None and start <= stopped <= end:
            points.setdefault(key, []).append((stopped, wh(row["meter_stop_wh"])))
    return {k: sorted(set(v)) for k, v in points.items()}


def _valid(value: float) -> bool:
    return value == value and value >= 0  # not NaN, not negative


def metered(points: Sequence[tuple[datetime, Decimal]]) -> tuple[Decimal, int]:
    """(Wh the register advanced, resets seen): every plausible rise counts, a drop is a reset or
    a session-relative meter starting again, and the next rise counts from there."""
    total, resets = ZERO, 0
    for (t0, v0), (t1, v1) in pairwise(points):
        if v1 < v0:
            resets += 1
            continue
        hours = Decimal(str((t1 - t0).total_seconds())) / 3600
        if v1 - v0 <= Decimal(PLAUSIBLE_SLACK_WH) + Decimal(MAX_PLAUSIBLE_POWER_W) * hours:
            total += v1 - v0
    return total, resets


def site_meter_delta(
    conn: Connection, entity_id: str, start: datetime, end: datetime
) -> Decimal | None:
    """Wh a site meter entity (a total energy sensor, Wh or kWh) advanced between two times,
    from the recorder's history: its last state at or before each of them."""
    values = [_state_at(conn, entity_id, t) for t in (start, end)]
    if values[0] is None or values[1] is None:
        return None
    return values[1] - values[0]


def _state_at(conn: Connection, entity_id: str, when: datetime) -> Decimal | None:
    query = (
        select(states.c.state, states.c.unit)
        .where(states.c.entity_id == entity_id, states.c.last_updated <= when)
        .order_by(states.c.last_updated.desc(), states.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    if row is None or row[0] is None:
        return None
    factor = _WH.get((row[1] or "kWh").strip().lower())
    try:
        return dec(row[0].strip('"')) * factor if factor is not None else None
    except ValueError:
        return None


def report(
    cdrs: Sequence[Cdr],
    points: Mapping[tuple[str, int], Sequence[tuple[datetime, Decimal]]],
    thresholds: Thresholds,
    *,
    site_meter: str | None = None,
    site_wh: Decimal | None = None,
    recomputed: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    billed: dict[tuple[str, int], Decimal] = {}
    count: dict[tuple[str, int], int] = {}
    unbilled = ZERO
    for cdr in cdrs:
        key = (cdr.charger_id, cdr.connector)
        billed[key] = billed.get(key, ZERO) + cdr.energy_wh
        count[key] = count.get(key, 0) + 1
        if cdr.bill_to is None and "payment" not in cdr.doc:  # nobody invoiced, no card
            unbilled += cdr.energy_wh
    chargers = []
    metered_total = ZERO
    for key in sorted(set(billed) | set(points)):
        m, resets = metered(points.get(key, ()))
        metered_total += m
        b = billed.get(key, ZERO)
        chargers.append(
            {
                "charger_id": key[0],
                "connector": key[1],
                "cdrs": count.get(key, 0),
                "billed_kwh": _kwh(b),
                "metered_kwh": _kwh(m),
                "difference_kwh": _kwh(m - b),
                "meter_resets": resets,
                "flagged": thresholds.exceeded(m - b, m),
            }
        )
    result: dict[str, Any] = {
        "chargers": chargers,
        "flagged_chargers": [c["charger_id"] for c in chargers if c["flagged"]],
        "billed_kwh": _kwh(sum(billed.values(), ZERO)),
        "metered_kwh": _kwh(metered_total),
        "unbilled_kwh": _kwh(unbilled),
    }
    if site_meter is not None:
        site: dict[str, Any] = {"entity_id": site_meter, "site_kwh": None, "flagged": None}
        if site_wh is not None:
            diff = site_wh - metered_total
            site.update(
                site_kwh=_kwh(site_wh),
                chargers_kwh=_kwh(metered_total),
                difference_kwh=_kwh(diff),
                flagged=thresholds.exceeded(diff, site_wh, thresholds.site_percent),
            )
        result["site"] = site
    if recomputed is not None:
        result["cdrs_checked"] = len(recomputed)
        result["cdrs_not_reproducible"] = sorted(k for k, ok in recomputed.items() if not ok)
    return result
