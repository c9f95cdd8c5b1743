"""Invoices and credit notes as documents: lines from CDRs, subscriptions and allowances, then
tax once per rate on the invoice's totals (as EU invoicing rules expect), numbered without gaps.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from plugins.billing import ledger, store
from plugins.billing.cdr import CREDIT, Cdr
from plugins.billing.money import HUNDRED, ZERO, dec, fmt, round_money
from plugins.billing.plans import PricePlan
from plugins.billing.pricing import KWH, apply_tax
from plugins.billing.store import BillingError
from plugins.billing.tables import invoices as invoices_table

INVOICE = "invoice"
CREDIT_NOTE = "credit_note"


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime  # aware, UTC
    end: datetime
    label: str  # "2026-03"

    @classmethod
    def month(cls, year: int, month: int, tz: ZoneInfo) -> Period:
        """A calendar month in the site's local time."""
        first = datetime.combine(date(year, month, 1), time(0), tzinfo=tz)
        days = calendar.monthrange(year, month)[1]
        after = datetime.combine(date(year, month, days) + timedelta(days=1), time(0), tzinfo=tz)
        return cls(
            first.astimezone(ZoneInfo("UTC")),
            after.astimezone(ZoneInfo("UTC")),
            f"{year:04d}-{month:02d}",
        )

    @classmethod
    def previous_month(cls, now: datetime, tz: ZoneInfo) -> Period:
        local = now.astimezone(tz)
        year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
        return cls.month(year, month, tz)


@dataclass(frozen=True, slots=True)
class Numbering:
    invoice_prefix: str = "INV-"
    credit_prefix: str = "CN-"
    yearly: bool = True
    digits: int = 6

    def series(self, kind: str, issued_local: datetime) -> str:
        prefix = self.credit_prefix if kind == CREDIT_NOTE else self.invoice_prefix
        return f"{prefix}{issued_local.year}-" if self.yearly else prefix

    def number(self, series: str, seq: int) -> str:
        return f"{series}{seq:0{self.digits}d}"


def _line(
    kind: str, description: str, amount: Decimal, rate: Decimal, included: bool, **extra: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "description": description,
        "amount": amount,
        "tax_rate": rate,
        "prices_include_tax": included,
        **extra,
    }


def cdr_line(cdr: Cdr, tz: ZoneInfo) -> dict[str, Any]:
    b = cdr.breakdown
    start, stop = cdr.started_at.astimezone(tz), cdr.stopped_at.astimezone(tz)
    where = cdr.doc.get("session", {}).get("entity_id") or f"{cdr.charger_id}/{cdr.connector}"
    text = f"Charging at {where}, {start:%Y-%m-%d %H:%M}-{stop:%H:%M}"
    if cdr.kind == CREDIT:
        text = f"Credit for {cdr.credit_of[:8] if cdr.credit_of else ''}: {text}"
    return _line(
        "session",
        text,
        b.total,
        b.tax_rate,
        b.prices_include_tax,
        cdr_id=cdr.id,
        date=start.date().isoformat(),
        quantity=dec(cdr.energy_wh) / KWH,
        unit="kWh",
        plan=cdr.plan,
        token=cdr.token,
    )


def allowance_lines(cdrs: Sequence[Cdr], currency: str) -> list[dict[str, Any]]:
    """Included kWh of subscription plans, credited at the price those kWh were charged at
    (their period's price less the plan's energy discounts), oldest sessions first."""
    credited = {c.credit_of for c in cdrs if c.kind == CREDIT}
    left: dict[str, Decimal] = {}
    value: dict[str, Decimal] = {}
    used: dict[str, Decimal] = {}
    plans: dict[str, PricePlan] = {}
    for cdr in cdrs:
        plan = PricePlan.from_snapshot(cdr.doc["plan"])
        if plan.subscription is None or cdr.kind == CREDIT or cdr.id in credited:
            continue
        name = plan.name
        plans.setdefault(name, plan)
        left.setdefault(name, plan.subscription.included_kwh)
        factor = Decimal(1)
        for d in plan.discounts:
            if d.on in ("energy", "all"):
                factor *= (HUNDRED - d.percent) / HUNDRED
        for seg in cdr.breakdown.segments:
            take = min(left[name], seg.wh / KWH)
            if take <= 0:
                break
            left[name] -= take
            used[name] = used.get(name, ZERO) + take
            value[name] = value.get(name, ZERO) + take * seg.price * factor
    lines = []
    for name, kwh in used.items():
        plan, sub = plans[name], plans[name].subscription
        assert sub is not None
        lines.append(
            _line(
                "allowance",
                f"Included energy of {sub.name}: {kwh.normalize():f} of "
                f"{sub.included_kwh.normalize():f} kWh",
                -round_money(value[name], currency),
                plan.tax_rate,
                plan.prices_include_tax,
                quantity=-kwh,
                unit="kWh",
            )
        )
    return lines


def subscription_lines(plans: Sequence[PricePlan], period: Period) -> list[dict[str, Any]]:
    lines = []
    for plan in plans:
        sub = plan.subscription
        if sub is not None and sub.monthly_fee:
            lines.append(
                _line(
                    "subscription",
                    f"Subscription {sub.name}, {period.label}",
                    round_money(sub.monthly_fee, plan.currency),
                    plan.tax_rate,
                    plan.prices_include_tax,
                    quantity=Decimal(1),
                    unit="month",
                )
            )
    return lines


def tax_summary(lines: Sequence[Mapping[str, Any]], currency: str) -> list[dict[str, Any]]:
    """Net, tax and gross per (rate, net or gross prices), each rounded once on its total."""
    groups: dict[tuple[Decimal, bool], Decimal] = {}
    for line in lines:
        key = (dec(line["tax_rate"]), bool(line["prices_include_tax"]))
        groups[key] = groups.get(key, ZERO) + dec(line["amount"])
    summary = []
    for (rate, included), total in sorted(groups.items()):
        net, tax, gross = apply_tax(total, rate, included, currency)
        summary.append({"rate": rate, "net": net, "tax": tax, "gross": gross})
    return summary


def totals(summary: Sequence[Mapping[str, Any]]) -> tuple[Decimal, Decimal, Decimal]:
    net = sum((s["net"] for s in summary), ZERO)
    tax = sum((s["tax"] for s in summary), ZERO)
    return net, tax, net + tax


@dataclass(frozen=True, slots=True)
class Draft:
    """What to invoice for one party and currency, before a number is taken."""

    bill_to: str
    currency: str
    period: Period
    customer: Mapping[str, Any]
    subscriptions: tuple[PricePlan, ...] = ()


def issue(
    conn: Connection,
    draft: Draft,
    *,
    numbering: Numbering,
    issuer: Mapping[str, Any],
    tz: ZoneInfo,
    now: datetime,
    terms_days: int,
) -> dict[str, Any] | None:
    """Create the invoice inside the caller's transaction (a write_fact): re-read the party's
    uninvoiced CDRs, take the next number, write the invoice, its items and its ledger entry.
    None when there is nothing to invoice or the period was invoiced already."""
    key = period_key(draft)
    if conn.execute(select(invoices_table.c.id).where(invoices_table.c.period_key == key)).first():
        return None
    cdrs = store.uninvoiced(conn, draft.bill_to, draft.currency, draft.period.end)
    plans = {p.name: p for p in draft.subscriptions}
    for cdr in cdrs:
        plan = PricePlan.from_snapshot(cdr.doc["plan"])
        if plan.subscription is not None:
            plans.setdefault(plan.name, plan)
    lines = [cdr_line(c, tz) for c in cdrs]
    lines += subscription_lines(
        [p for p in plans.values() if p.currency == draft.currency], draft.period
    )
    lines += allowance_lines(cdrs, draft.currency)
    if not lines:
        return None
    issued_local = now.astimezone(tz)
    series = numbering.series(INVOICE, issued_local)
    seq = store.next_seq(conn, series)
    number = numbering.number(series, seq)
    summary = tax_summary(lines, draft.currency)
    net, tax, gross = totals(summary)
    doc = _doc(INVOICE, number, draft, issuer, lines, summary, issued_local, terms_days)
    row = _row(INVOICE, number, series, seq, draft, now, net, tax, gross, doc)
    store.insert_invoice(conn, row, [c.id for c in cdrs])
    ledger.write_entry(conn, ledger.sale(draft.bill_to, draft.currency, net, tax, row["id"]), now)
    return row


def issue_credit_note(
    conn: Connection,
    invoice_key: str,
    reason: str,
    partial: Sequence[Mapping[str, Any]] | None,
    *,
    numbering: Numbering,
    tz: ZoneInfo,
    now: datetime,
) -> dict[str, Any]:
    """A credit note against an invoice: all of it, or the given lines (amount, tax_rate, ...)
    in the invoice's own terms. Never more than what is left to credit."""
    invoice = store.get_invoice(conn, invoice_key)
    if invoice is None or invoice["kind"] != INVOICE:
        raise BillingError(f"no invoice {invoice_key!r}")
    doc = invoice["doc"]
    if partial:
        lines = [
            _line(
                "credit",
                str(x.get("description") or reason),
                -round_money(dec(x["amount"]), invoice["currency"]),
                dec(x.get("tax_rate", 0)),
                bool(x.get("prices_include_tax", False)),
            )
            for x in partial
        ]
    else:
        lines = [{**x, "amount": -dec(x["amount"]), "kind": "credit"} for x in doc["lines"]]
    summary = tax_summary(lines, invoice["currency"])
    net, tax, gross = totals(summary)
    already = sum((c["gross"] for c in store.credit_notes_of(conn, invoice["id"])), ZERO)
    if -gross + -already > invoice["gross"]:
        raise BillingError(
            f"credit {fmt(-gross)} exceeds what is left of invoice {invoice['number']} "
            f"({fmt(invoice['gross'] + already)})"
        )
    issued_local = now.astimezone(tz)
    series = numbering.series(CREDIT_NOTE, issued_local)
    seq = store.next_seq(conn, series)
    number = numbering.number(series, seq)
    period = Period(invoice["period_start"], invoice["period_end"], doc["period"]["label"])
    draft = Draft(invoice["bill_to"], invoice["currency"], period, doc["customer"])
    cn = _doc(CREDIT_NOTE, number, draft, doc["issuer"], lines, summary, issued_local, 0)
    cn["credit_of"] = {"id": invoice["id"], "number": invoice["number"]}
    cn["reason"] = reason
    row = _row(CREDIT_NOTE, number, series, seq, draft, now, net, tax, gross, cn)
    row["credit_of"] = invoice["id"]
    store.insert_invoice(conn, row, [])
    entry = ledger.sale(draft.bill_to, draft.currency, net, tax, row["id"], kind=CREDIT_NOTE)
    ledger.write_entry(conn, entry, now)
    return row


def period_key(draft: Draft) -> str:
    return f"{draft.bill_to}|{draft.currency}|{draft.period.label}"[:128]


def _doc(
    kind: str,
    number: str,
    draft: Draft,
    issuer: Mapping[str, Any],
    lines: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    issued_local: datetime,
    terms_days: int,
) -> dict[str, Any]:
    net, tax, gross = totals(summary)
    return _plain(
        {
            "kind": kind,
            "number": number,
            "issuer": dict(issuer),
            "customer": {"id": draft.bill_to, **dict(draft.customer)},
            "period": {
                "label": draft.period.label,
                "start": draft.period.start.isoformat(),
                "end": draft.period.end.isoformat(),
            },
            "issued": issued_local.date().isoformat(),
            "due": (issued_local.date() + timedelta(days=terms_days)).isoformat(),
            "currency": draft.currency,
            "lines": lines,
            "tax": summary,
            "net": net,
            "tax_total": tax,
            "gross": gross,
        }
    )


def _row(
    kind: str,
    number: str,
    series: str,
    seq: int,
    draft: Draft,
    now: datetime,
    net: Decimal,
    tax: Decimal,
    gross: Decimal,
    doc: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "number": number,
        "series": series,
        "seq": seq,
        "kind": kind,
        "credit_of": None,
        "period_key": period_key(draft) if kind == INVOICE else None,
        "bill_to": draft.bill_to,
        "period_start": draft.period.start,
        "period_end": draft.period.end,
        "issued_at": now,
        "currency": draft.currency,
        "net": net,
        "tax": tax,
        "gross": gross,
        "doc": doc,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
