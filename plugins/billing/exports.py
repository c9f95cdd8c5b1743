"""CDRs and invoices for ERP and fleet systems: CSV, JSON and OCPI 2.2.1 CDR objects.

Tokens appear as pseudonyms unless the caller passes the raw ids (admins only, audited).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from plugins.billing.cdr import CREDIT, Cdr
from plugins.billing.money import HUNDRED, ZERO, dec
from plugins.billing.plans import DAYS, PricePlan
from plugins.billing.pricing import KWH

CDR_COLUMNS = (
    "cdr_id",
    "kind",
    "credit_of",
    "replaces",
    "session_id",
    "transaction_id",
    "charger_id",
    "connector",
    "site",
    "token",
    "account_id",
    "bill_to",
    "started_at",
    "stopped_at",
    "total_hours",
    "charging_hours",
    "idle_minutes",
    "energy_kwh",
    "currency",
    "net",
    "tax",
    "gross",
    "tax_rate",
    "plan",
    "energy_method",
    "signed_values",
    "invoice",
)
INVOICE_COLUMNS = (
    "number",
    "kind",
    "credit_of",
    "bill_to",
    "customer",
    "issued",
    "due",
    "period",
    "currency",
    "net",
    "tax",
    "gross",
)
_DAY_NAMES = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_HOURS = Decimal(3600)


def dumps(value: Any) -> str:
    """JSON with every Decimal written as the exact number it is (no float on the way)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return json.dumps(_ts(value))
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _token(cdr: Cdr, raw: Mapping[str, str] | None) -> str | None:
    if raw is not None:
        return raw.get(cdr.session_id)
    return cdr.token


def cdr_record(
    cdr: Cdr, raw: Mapping[str, str] | None = None, invoice: str | None = None
) -> dict[str, Any]:
    b = cdr.breakdown
    s = cdr.doc.get("session", {})
    return {
        "cdr_id": cdr.id,
        "kind": cdr.kind,
        "credit_of": cdr.credit_of,
        "replaces": cdr.replaces,
        "session_id": cdr.session_id,
        "transaction_id": s.get("transaction_id"),
        "charger_id": cdr.charger_id,
        "connector": cdr.connector,
        "site": cdr.site,
        "token": _token(cdr, raw),
        "account_id": cdr.account_id,
        "bill_to": cdr.bill_to,
        "started_at": _ts(cdr.started_at),
        "stopped_at": _ts(cdr.stopped_at),
        "total_hours": (b.total_s / _HOURS).quantize(Decimal("0.0001")),
        "charging_hours": (b.charging_s / _HOURS).quantize(Decimal("0.0001")),
        "idle_minutes": (b.idle_s / 60).quantize(Decimal("0.01")),
        "energy_kwh": dec(cdr.energy_wh) / KWH,
        "currency": cdr.currency,
        "net": cdr.net,
        "tax": cdr.tax,
        "gross": cdr.gross,
        "tax_rate": b.tax_rate,
        "plan": cdr.plan,
        "energy_method": cdr.doc.get("energy", {}).get("method"),
        "signed_values": len(cdr.doc.get("signed_meter_values", [])),
        "invoice": invoice,
    }


def cdrs_csv(records: Sequence[Mapping[str, Any]]) -> str:
    return _csv(CDR_COLUMNS, records)


def invoice_record(row: Mapping[str, Any]) -> dict[str, Any]:
    doc = row["doc"]
    return {
        "number": row["number"],
        "kind": row["kind"],
        "credit_of": (doc.get("credit_of") or {}).get("number"),
        "bill_to": row["bill_to"],
        "customer": doc.get("customer", {}).get("name"),
        "issued": doc.get("issued"),
        "due": doc.get("due"),
        "period": doc.get("period", {}).get("label"),
        "currency": row["currency"],
        "net": row["net"],
        "tax": row["tax"],
        "gross": row["gross"],
    }


def invoices_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    return _csv(INVOICE_COLUMNS, [invoice_record(r) for r in rows])


def _csv(columns: Sequence[str], records: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _cell(record.get(k)) for k in columns})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") and not _numeric(value):
        return "'" + value  # a spreadsheet must not run a formula from a token or a name
    return value


def _numeric(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


# --- OCPI 2.2.1 --------------------------------------------------------------------------------
def _price(excl: Decimal, incl: Decimal | None = None) -> dict[str, Decimal]:
    """OCPI Price: excl_vat, and incl_vat when known."""
    return {"excl_vat": excl} if incl is None else {"excl_vat": excl, "incl_vat": incl}


def _split(amount: Decimal, rate: Decimal, included: bool) -> tuple[Decimal, Decimal]:
    """(excl_vat, incl_vat) of a line amount, for the OCPI cost fields (informational)."""
    factor = (HUNDRED + rate) / HUNDRED
    if included:
        return (amount / factor).quantize(Decimal("0.0001")), amount
    return amount, (amount * factor).quantize(Decimal("0.0001"))


def ocpi_tariff(plan: PricePlan, party: Mapping[str, str], updated: datetime) -> dict[str, Any]:
    """The plan as an OCPI Tariff (prices excl. VAT, per kWh / per hour)."""
    rate = plan.tax_rate

    def excl(price: Decimal) -> Decimal:
        return _split(price, rate, plan.prices_include_tax)[0]

    def component(kind: str, price: Decimal) -> dict[str, Any]:
        return {"type": kind, "price": excl(price), "vat": rate, "step_size": 1}

    elements: list[dict[str, Any]] = []
    if plan.session_fee:
        elements.append({"price_components": [component("FLAT", plan.session_fee)]})
    for p in plan.periods:
        elements.append(
            {
                "price_components": [component("ENERGY", p.price)],
                "restrictions": {
                    "start_time": p.start.strftime("%H:%M"),
                    "end_time": p.end.strftime("%H:%M"),
                    "day_of_week": [_DAY_NAMES[DAYS.index(d)] for d in p.days],
                },
            }
        )
    elements.append({"price_components": [component("ENERGY", plan.energy_price)]})
    if plan.time_per_minute:
        elements.append({"price_components": [component("TIME", plan.time_per_minute * 60)]})
    if plan.idle_per_minute:
        elements.append(
            {"price_components": [component("PARKING_TIME", plan.idle_per_minute * 60)]}
        )
    tariff: dict[str, Any] = {
        "country_code": party["country_code"],
        "party_id": party["party_id"],
        "id": plan.name[:36],
        "currency": plan.currency,
        "type": "REGULAR",
        "elements": elements,
        "last_updated": updated,
    }
    if plan.minimum is not None:
        tariff["min_price"] = _price(excl(plan.minimum))
    if plan.maximum is not None:
        tariff["max_price"] = _price(excl(plan.maximum))
    return tariff


def ocpi_cdr(
    cdr: Cdr,
    conf: Mapping[str, Any],
    raw: Mapping[str, str] | None = None,
    invoice: str | None = None,
) -> dict[str, Any]:
    """One CDR as an OCPI 2.2.1 CDR object (module cdrs, 10.3.1), field names as the spec."""
    b = cdr.breakdown
    party = {"country_code": conf["country_code"], "party_id": conf["party_id"]}
    plan = PricePlan.from_snapshot(cdr.doc["plan"])
    uid = _token(cdr, raw) or "UNKNOWN"
    adhoc = "payment" in cdr.doc  # started with an ad-hoc card token
    location = conf.get("location", {})
    evse_uid = f"{cdr.charger_id}-{cdr.connector}"[:36]
    costs: dict[str, tuple[Decimal, Decimal]] = {}
    for line in b.lines:
        key = {"energy": "energy", "time": "time", "idle": "parking"}.get(line.kind, "fixed")
        excl, incl = _split(line.amount, b.tax_rate, b.prices_include_tax)
        old = costs.get(key, (ZERO, ZERO))
        costs[key] = (old[0] + excl, old[1] + incl)
    periods = [
        {
            "start_date_time": s.start,
            "tariff_id": plan.name[:36],
            "dimensions": [
                {"type": "ENERGY", "volume": s.wh / KWH},
                {
                    "type": "TIME",
                    "volume": (_secs(s.end - s.start) / _HOURS).quantize(Decimal("0.000001")),
                },
            ],
        }
        for s in b.segments
    ]
    if b.charging_end is not None and b.idle_s > 0:
        periods.append(
            {
                "start_date_time": b.charging_end,
                "tariff_id": plan.name[:36],
                "dimensions": [
                    {
                        "type": "PARKING_TIME",
                        "volume": (b.idle_s / _HOURS).quantize(Decimal("0.000001")),
                    }
                ],
            }
        )
    if not periods:
        periods.append(
            {"start_date_time": cdr.started_at, "dimensions": [{"type": "ENERGY", "volume": ZERO}]}
        )
    record: dict[str, Any] = {
        **party,
        "id": cdr.id,
        "start_date_time": cdr.started_at,
        "end_date_time": cdr.stopped_at,
        "session_id": cdr.session_id[:36],
        "cdr_token": {
            **party,
            "uid": uid[:36],
            "type": "AD_HOC_USER" if adhoc else "RFID",
            "contract_id": (cdr.account_id or uid)[:36],
        },
        "auth_method": "COMMAND" if adhoc else "WHITELIST",
        "cdr_location": {
            "id": str(location.get("id") or cdr.site or "site")[:36],
            "name": location.get("name"),
            "address": location.get("address", ""),
            "city": location.get("city", ""),
            "postal_code": location.get("postal_code"),
            "country": location.get("country", "DEU"),
            "coordinates": {
                "latitude": str(location.get("latitude", "0.0")),
                "longitude": str(location.get("longitude", "0.0")),
            },
            "evse_uid": evse_uid,
            "evse_id": f"{conf.get('evse_id_prefix', '')}{evse_uid}"[:48],
            "connector_id": str(cdr.connector),
            "connector_standard": conf.get("connector_standard", "IEC_62196_T2"),
            "connector_format": conf.get("connector_format", "SOCKET"),
            "connector_power_type": conf.get("connector_power_type", "AC_3_PHASE"),
        },
        "currency": cdr.currency,
        "tariffs": [ocpi_tariff(plan, party, cdr.created_at)],
        "charging_periods": periods,
        "total_cost": _price(cdr.net, cdr.gross),
        "total_energy": dec(cdr.energy_wh) / KWH,
        "total_time": (b.total_s / _HOURS).quantize(Decimal("0.000001")),
        "total_parking_time": (b.parking_s / _HOURS).quantize(Decimal("0.000001")),
        "last_updated": cdr.created_at,
    }
    for name, key in (
        ("energy", "total_energy_cost"),
        ("time", "total_time_cost"),
        ("parking", "total_parking_cost"),
        ("fixed", "total_fixed_cost"),
    ):
        if name in costs:
            record[key] = _price(*costs[name])
    signed = cdr.doc.get("signed_meter_values", [])
    if signed:
        record["signed_data"] = {
            "encoding_method": signed[0]["encoding"]
            if signed[0]["encoding"] != "unknown"
            else "UNKNOWN",
            "signed_values": [
                {
                    "nature": _nature(i, len(signed), v.get("context")),
                    "plain_data": "",
                    "signed_data": v["signed_data"],
                }
                for i, v in enumerate(signed)
            ],
        }
    remark = cdr.doc.get("reason") or cdr.doc.get("session", {}).get("stop_reason")
    if remark:
        record["remark"] = str(remark)[:255]
    if invoice:
        record["invoice_reference_id"] = invoice
    if cdr.kind == CREDIT:
        record["credit"], record["credit_reference_id"] = True, cdr.credit_of
    return record


def _nature(index: int, count: int, context: str | None) -> str:
    if context == "Transaction.Begin" or (index == 0 and count > 1 and context is None):
        return "Start"
    if context == "Transaction.End" or index == count - 1:
        return "End"
    return "Intermediate"


def _secs(delta: Any) -> Decimal:
    return Decimal(delta.days * 86_400 + delta.seconds) + Decimal(delta.microseconds).scaleb(-6)
