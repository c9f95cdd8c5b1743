"""Pricing a session: a pure function of its energy intervals, its times, a plan and the time zone.

Energy is split exactly at time-of-use boundaries; each line is rounded to the minor unit once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Any

from hub.charging.session import EnergyInterval
from plugins.billing.money import HUNDRED, MWH, ZERO, dec, round_money, wh
from plugins.billing.plans import CHARGEABLE, PricePlan

SIXTY = Decimal(60)
KWH = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Segment:
    """Energy delivered in [start, end) inside one time-of-use period."""

    start: datetime
    end: datetime
    wh: Decimal
    period: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Line:
    kind: str  # energy, time, idle, session_fee, discount, minimum, maximum (and invoice kinds)
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    period: str | None = None


@dataclass(frozen=True, slots=True)
class Breakdown:
    """A priced session. `total` is in the plan's terms (gross when prices include tax)."""

    currency: str
    tax_rate: Decimal
    prices_include_tax: bool
    lines: tuple[Line, ...]
    total: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal
    energy_wh: Decimal
    total_s: Decimal
    charging_s: Decimal
    idle_s: Decimal  # after charging ended
    billable_idle_s: Decimal  # idle beyond the grace period
    charging_end: datetime | None
    segments: tuple[Segment, ...]

    @property
    def parking_s(self) -> Decimal:
        """Time connected but not charging, anywhere in the session (OCPI total_parking_time)."""
        return self.total_s - self.charging_s

    def as_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Breakdown:
        decimals = (
            "tax_rate",
            "total",
            "net",
            "tax",
            "gross",
            "energy_wh",
            "total_s",
            "charging_s",
            "idle_s",
            "billable_idle_s",
        )
        data: dict[str, Any] = {k: dec(d[k]) if k in decimals else d[k] for k in d}
        end = d.get("charging_end")
        data["charging_end"] = datetime.fromisoformat(end) if end else None
        data["lines"] = tuple(
            Line(**{**x, **{k: dec(x[k]) for k in ("quantity", "unit_price", "amount")}})
            for x in d["lines"]
        )
        data["segments"] = tuple(
            Segment(
                datetime.fromisoformat(s["start"]),
                datetime.fromisoformat(s["end"]),
                dec(s["wh"]),
                s["period"],
                dec(s["price"]),
            )
            for s in d["segments"]
        )
        return cls(**data)

    def negated(self) -> Breakdown:
        """The same record with every amount and quantity negated: a credit."""
        return replace(
            self,
            lines=tuple(replace(x, quantity=-x.quantity, amount=-x.amount) for x in self.lines),
            total=-self.total,
            net=-self.net,
            tax=-self.tax,
            gross=-self.gross,
            energy_wh=-self.energy_wh,
            segments=tuple(replace(s, wh=-s.wh) for s in self.segments),
        )


def seconds(delta: timedelta) -> Decimal:
    """A duration as exact Decimal seconds (timedelta.total_seconds() is a float)."""
    whole = Decimal(delta.days * 86_400 + delta.seconds)
    return whole + Decimal(delta.microseconds).scaleb(-6)


def price_session(
    plan: PricePlan,
    started_at: datetime,
    ended_at: datetime,
    intervals: Sequence[EnergyInterval],
    tz: tzinfo,
) -> Breakdown:
    """Price one session (finished, or running until `ended_at` for an estimate)."""
    segments = split_energy(plan, intervals, tz)
    energy = sum((s.wh for s in segments), ZERO)
    charging_s, charging_end = charging_time(plan, started_at, ended_at, intervals)
    total_s = max(ZERO, seconds(ended_at - started_at))
    idle_s = max(ZERO, seconds(ended_at - (charging_end or started_at)))
    billable_idle = max(ZERO, idle_s - plan.idle_grace_minutes * SIXTY)
    cur = plan.currency
    lines: list[Line] = []
    for (period, price), kwh in _energy_by_period(segments).items():
        label = "Energy" if not plan.periods else f"Energy ({period})"
        lines.append(
            Line("energy", label, kwh, "kWh", price, round_money(kwh * price, cur), period)
        )
    if plan.time_per_minute:
        amount = round_money(charging_s * plan.time_per_minute / SIXTY, cur)
        lines.append(
            Line("time", "Charging time", _minutes(charging_s), "min", plan.time_per_minute, amount)
        )
    if plan.idle_per_minute and billable_idle > 0:
        amount = round_money(billable_idle * plan.idle_per_minute / SIXTY, cur)
        if plan.idle_max is not None:
            amount = min(amount, round_money(plan.idle_max, cur))
        grace = f" after {plan.idle_grace_minutes.normalize():f} min grace"
        lines.append(
            Line(
                "idle",
                "Idle fee" + (grace if plan.idle_grace_minutes else ""),
                _minutes(billable_idle),
                "min",
                plan.idle_per_minute,
                amount,
            )
        )
    # A session that delivered nothing (a failed plug-in) pays no session fee and no minimum;
    # blocking the bay still costs the idle fee.
    delivered = energy > 0
    if plan.session_fee and delivered:
        fee = round_money(plan.session_fee, cur)
        lines.append(Line("session_fee", "Session fee", Decimal(1), "session", fee, fee))
    for discount in plan.discounts:
        kinds = CHARGEABLE if discount.on == "all" else (discount.on,)
        base = sum((x.amount for x in lines if x.kind in kinds), ZERO)
        if base:
            amount = -round_money(base * discount.percent / HUNDRED, cur)
            lines.append(
                Line(
                    "discount",
                    f"{discount.name} ({discount.percent.normalize():f}%)",
                    discount.percent,
                    "%",
                    base,
                    amount,
                )
            )
    subtotal = sum((x.amount for x in lines), ZERO)
    if plan.minimum is not None and delivered and subtotal < plan.minimum:
        minimum = round_money(plan.minimum, cur)
        lines.append(
            Line(
                "minimum",
                "Minimum charge per session",
                Decimal(1),
                "session",
                minimum,
                minimum - subtotal,
            )
        )
    elif plan.maximum is not None and subtotal > plan.maximum:
        maximum = round_money(plan.maximum, cur)
        lines.append(
            Line(
                "maximum",
                "Maximum charge per session",
                Decimal(1),
                "session",
                maximum,
                maximum - subtotal,
            )
        )
    total = sum((x.amount for x in lines), ZERO)
    net, tax, gross = apply_tax(total, plan.tax_rate, plan.prices_include_tax, cur)
    return Breakdown(
        currency=cur,
        tax_rate=plan.tax_rate,
        prices_include_tax=plan.prices_include_tax,
        lines=tuple(lines),
        total=total,
        net=net,
        tax=tax,
        gross=gross,
        energy_wh=energy,
        total_s=total_s,
        charging_s=charging_s,
        idle_s=idle_s,
        billable_idle_s=billable_idle,
        charging_end=charging_end,
        segments=tuple(segments),
    )


def apply_tax(
    total: Decimal, rate: Decimal, included: bool, currency: str
) -> tuple[Decimal, Decimal, Decimal]:
    """(net, tax, gross) of a total at a tax rate in percent, rounded once on the total.

    Net prices: tax = round(net x rate). Gross prices: net = round(gross / (1 + rate)) and the
    tax is what is left, so net + tax is exactly the gross the customer was quoted.
    """
    if included:
        gross = total
        net = round_money(gross * HUNDRED / (HUNDRED + rate), currency)
        return net, gross - net, gross
    tax = round_money(total * rate / HUNDRED, currency)
    return total, tax, total + tax


def split_energy(plan: PricePlan, intervals: Iterable[EnergyInterval], tz: tzinfo) -> list[Segment]:
    """Each interval's energy in pieces that never cross a time-of-use boundary.

    A reading exactly on a boundary splits the energy exactly; an interval that crosses one is
    split in proportion to time (constant power between two readings). Pieces are rounded to
    the mWh and the last piece takes the remainder, so the pieces sum to the interval exactly.
    """
    segments: list[Segment] = []
    for interval in intervals:
        total = wh(interval.wh)
        start, end = interval.start, interval.end
        edges = [start, *_boundaries(plan, start, end, tz), end]
        span = seconds(end - start)
        left = total
        pieces = list(pairwise(edges)) if span > 0 else [(end, end)]
        for i, (a, b) in enumerate(pieces):
            if i == len(pieces) - 1:
                piece = left
            else:
                piece = (total * seconds(b - a) / span).quantize(MWH, rounding=ROUND_HALF_UP)
                left -= piece
            middle = a + (b - a) / 2
            period, price = plan.energy_period(middle.astimezone(tz))
            segments.append(Segment(a, b, piece, period, price))
    return _merge(segments)


def _boundaries(plan: PricePlan, start: datetime, end: datetime, tz: tzinfo) -> list[datetime]:
    """Instants strictly inside (start, end) where the price may change: every period's start
    and end and every local midnight (periods can be for some weekdays only)."""
    if not plan.periods or end <= start:
        return []
    found: set[datetime] = set()
    day: date = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        for t in {p.start for p in plan.periods} | {p.end for p in plan.periods} | {_MIDNIGHT}:
            instant = datetime.combine(day, t, tzinfo=tz)
            if start < instant < end:
                found.add(instant.astimezone(start.tzinfo))
        day += timedelta(days=1)
    return sorted(found)


_MIDNIGHT = datetime.min.time()


def _merge(segments: list[Segment]) -> list[Segment]:
    """Adjacent pieces in the same period become one (a CDR's charging periods stay short)."""
    merged: list[Segment] = []
    for s in segments:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.period == s.period
            and last.price == s.price
            and (last.end == s.start)
        ):
            merged[-1] = replace(last, end=s.end, wh=last.wh + s.wh)
        else:
            merged.append(s)
    return merged


def _energy_by_period(segments: Iterable[Segment]) -> dict[tuple[str, Decimal], Decimal]:
    totals: dict[tuple[str, Decimal], Decimal] = {}
    for s in segments:
        key = (s.period, s.price)
        totals[key] = totals.get(key, ZERO) + s.wh
    return {k: v / KWH for k, v in totals.items() if v}


def charging_time(
    plan: PricePlan,
    started_at: datetime,
    ended_at: datetime,
    intervals: Iterable[EnergyInterval],
) -> tuple[Decimal, datetime | None]:
    """(seconds spent drawing energy, when drawing ended), from the energy intervals alone.

    An interval between two readings counts as charging when its average power reaches the
    plan's `idle_power_w`. Charging ends at the reading that closes the last such interval: with
    readings every few minutes that favours the driver by at most one interval. Status
    notifications are not used: they are history, not the recorded facts a bill rests on.
    """
    total, end = ZERO, None
    for iv in intervals:
        a, b = max(iv.start, started_at), min(iv.end, ended_at)
        span = seconds(iv.end - iv.start)
        power = wh(iv.wh) * 3600 / span if span > 0 else None
        if power is not None and power < plan.idle_power_w:
            continue
        total += max(ZERO, seconds(b - a))
        end = b if end is None else max(end, b)
    return total, end


def _minutes(secs: Decimal) -> Decimal:
    return (secs / SIXTY).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
