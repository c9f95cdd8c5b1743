"""The `billing.*` services: estimates, CDR corrections, invoices, payments, exports and the
reconciliation report. Every answer is plain JSON data, amounts as decimal text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.services import ServiceCall
from hub.validators import aware_datetime as _aware
from plugins.billing import ledger
from plugins.billing.money import fmt, money_schema
from plugins.billing.office import month_period

if TYPE_CHECKING:
    from plugins.billing import Billing


_MONTH = vol.Match(r"^\d{4}-(0[1-9]|1[0-2])$")
_FORMAT = vol.In(("csv", "json", "ocpi"))
_RANGE = {vol.Optional("start"): _aware, vol.Optional("end"): _aware}

SCHEMAS: dict[str, Any] = {
    "estimate": {vol.Required("session_id"): str},
    "quote": {
        vol.Required("entity_id"): vol.Match(r"^charger\.[a-z0-9_]+$"),
        vol.Optional("id_token"): vol.All(str, vol.Length(min=1, max=36)),
    },
    "bill_session": {vol.Required("session_id"): str},
    "correct_cdr": {
        vol.Required("cdr_id"): str,
        vol.Required("reason"): str,
        vol.Optional("plan"): str,
    },
    "issue_invoices": {vol.Optional("period"): _MONTH, vol.Optional("bill_to"): str},
    "credit_note": {
        vol.Required("invoice"): str,
        vol.Required("reason"): str,
        vol.Optional("lines"): [
            {
                vol.Required("amount"): money_schema(None),
                vol.Optional("tax_rate", default=0): money_schema(),
                vol.Optional("prices_include_tax", default=False): bool,
                vol.Optional("description"): str,
            }
        ],
    },
    "email_invoice": {vol.Required("invoice"): str, vol.Optional("to"): str},
    "invoice_status": {vol.Required("invoice"): str},
    "record_payment": {
        vol.Required("invoice"): str,
        vol.Required("amount"): money_schema(),
        vol.Optional("reference"): str,
        vol.Optional("note"): str,
        vol.Optional("provider", default="invoice"): str,
    },
    "preauthorize": {
        vol.Optional("amount"): money_schema(),
        vol.Optional("currency"): vol.Match(r"^[A-Z]{3}$"),
        vol.Optional("charger"): str,
        vol.Optional("payment_method"): str,
        vol.Optional("customer"): str,
        vol.Optional("provider"): str,
    },
    "refund": {vol.Required("payment_id"): str, vol.Optional("amount"): money_schema()},
    "stripe_webhook": {vol.Required("payload"): str, vol.Required("signature"): str},
    "export_cdrs": {**_RANGE, vol.Optional("format", default="csv"): _FORMAT},
    "export_cdrs_raw": {**_RANGE, vol.Optional("format", default="csv"): _FORMAT},
    "export_invoices": {**_RANGE, vol.Optional("format", default="csv"): vol.In(("csv", "json"))},
    "reconciliation": {
        vol.Required("start"): _aware,
        vol.Required("end"): _aware,
        vol.Optional("recompute", default=True): bool,
    },
    "ledger": {},
}

DESCRIPTIONS = {
    "quote": "The plan and prices that apply now to a charger (and a token): shown before a start.",
    "estimate": "The price of a session so far (running) or in full: {total, net, tax, lines}.",
    "bill_session": "Make the CDR of a finished session (once; later calls return it).",
    "correct_cdr": "Credit a CDR and replace it, priced again from its readings (or a plan).",
    "issue_invoices": "Issue a month's invoices (default: last month), per party and currency.",
    "credit_note": "A credit note for an invoice: all of it, or the given lines.",
    "email_invoice": "E-mail an invoice's PDF to its customer (or `to`).",
    "invoice_status": "What is paid, credited and still due on an invoice.",
    "record_payment": "Book a bank transfer received for an invoice (manual reconciliation).",
    "preauthorize": "Hold an amount on a card before ad-hoc charging; returns the id_tag.",
    "refund": "Refund (part of) a payment through its provider.",
    "stripe_webhook": "Apply a Stripe webhook (payload and Stripe-Signature header).",
    "export_cdrs": "CDRs as CSV, JSON or OCPI 2.2.1, tokens pseudonymized.",
    "export_cdrs_raw": "CDRs with raw token ids (admins only; audited).",
    "export_invoices": "Invoices and credit notes as CSV or JSON.",
    "reconciliation": "Energy billed vs metered per charger, chargers vs site meter, CDR checks.",
    "ledger": "Ledger balances per account and currency, and the trial balance.",
}


def register_services(billing: Billing, register: Callable[..., None]) -> None:
    hub = billing.hub

    async def estimate(call: ServiceCall) -> Any:
        return await billing.engine.estimate(call.data["session_id"])

    async def quote(call: ServiceCall) -> Any:
        return await quote_for(billing, call.data["entity_id"], call.data.get("id_token"))

    async def bill_session(call: ServiceCall) -> Any:
        cdr = await billing.engine.bill_session(call.data["session_id"])
        return None if cdr is None else cdr.summary()

    async def correct_cdr(call: ServiceCall) -> Any:
        d = call.data
        return [
            c.summary()
            for c in await billing.engine.correct(d["cdr_id"], d["reason"], d.get("plan"))
        ]

    async def issue_invoices(call: ServiceCall) -> Any:
        period = month_period(call.data.get("period"), hub.clock.now(), hub.time_zone)
        rows = await billing.office.run(period, call.data.get("bill_to"))
        return [_invoice(r) for r in rows]

    async def credit_note(call: ServiceCall) -> Any:
        d = call.data
        return _invoice(await billing.office.credit_note(d["invoice"], d["reason"], d.get("lines")))

    async def email_invoice(call: ServiceCall) -> Any:
        return await billing.office.email(call.data["invoice"], call.data.get("to"))

    async def invoice_status(call: ServiceCall) -> Any:
        return await billing.payments.invoice_status(call.data["invoice"])

    async def record_payment(call: ServiceCall) -> Any:
        d = call.data
        return await billing.payments.record_payment(
            d["invoice"],
            d["amount"],
            provider=d["provider"],
            reference=d.get("reference"),
            note=d.get("note"),
        )

    async def preauthorize(call: ServiceCall) -> Any:
        d = call.data
        stripe_conf = billing.conf["payments"].get("stripe") or {}
        amount = d.get("amount") or stripe_conf.get("preauthorize_amount")
        return await billing.payments.preauthorize(
            amount,
            d.get("currency") or billing.engine.currency,
            provider=d.get("provider"),
            charger=d.get("charger"),
            payment_method=d.get("payment_method"),
            customer=d.get("customer"),
        )

    async def refund(call: ServiceCall) -> Any:
        row = await billing.payments.refund(call.data["payment_id"], call.data.get("amount"))
        return {
            k: fmt(v) if hasattr(v, "quantize") else v
            for k, v in row.items()
            if k in ("id", "status", "amount", "refunded", "currency")
        }

    async def stripe_webhook(call: ServiceCall) -> Any:
        if billing.stripe_webhooks is None:
            raise ValueError("no stripe provider is configured")
        return await billing.stripe_webhooks.handle(
            call.data["payload"].encode(), call.data["signature"]
        )

    async def export_cdrs(call: ServiceCall) -> Any:
        d = call.data
        return await billing.office.export_cdrs(d.get("start"), d.get("end"), d["format"], False)

    async def export_cdrs_raw(call: ServiceCall) -> Any:
        d = call.data
        return await billing.office.export_cdrs(
            d.get("start"), d.get("end"), d["format"], True, call.context.user_id
        )

    async def export_invoices(call: ServiceCall) -> Any:
        d = call.data
        return await billing.office.export_invoices(d.get("start"), d.get("end"), d["format"])

    async def reconciliation(call: ServiceCall) -> Any:
        d = call.data
        return await billing.office.reconciliation(d["start"], d["end"], d["recompute"])

    async def ledger_service(call: ServiceCall) -> Any:
        assert hub.recorder is not None

        def read(conn: Any) -> Any:
            return ledger.balances(conn), ledger.trial_balance(conn)

        balances, trial = await hub.recorder.read(read)
        return {
            "balances": [
                {"account": a, "currency": c, "balance": fmt(v)}
                for (a, c), v in sorted(balances.items())
            ],
            "trial_balance": {c: fmt(v) for c, v in trial.items()},
        }

    handlers = {
        "quote": quote,
        "estimate": estimate,
        "bill_session": bill_session,
        "correct_cdr": correct_cdr,
        "issue_invoices": issue_invoices,
        "credit_note": credit_note,
        "email_invoice": email_invoice,
        "invoice_status": invoice_status,
        "record_payment": record_payment,
        "preauthorize": preauthorize,
        "refund": refund,
        "stripe_webhook": stripe_webhook,
        "export_cdrs": export_cdrs,
        "export_cdrs_raw": export_cdrs_raw,
        "export_invoices": export_invoices,
        "reconciliation": reconciliation,
        "ledger": ledger_service,
    }
    for name, handler in handlers.items():
        register("billing", name, handler, vol.Schema(SCHEMAS[name]), DESCRIPTIONS[name])


def _invoice(row: Any) -> dict[str, Any]:
    return {
        "invoice_id": row["id"],
        "number": row["number"],
        "kind": row["kind"],
        "bill_to": row["bill_to"],
        "currency": row["currency"],
        "net": fmt(row["net"]),
        "tax": fmt(row["tax"]),
        "gross": fmt(row["gross"]),
    }


async def quote_for(billing: Billing, entity_id: str, id_token: str | None) -> dict[str, Any]:
    """The plan a session started now on `entity_id` by `id_token` would be priced with, and its
    prices now (amounts as configured: net unless `prices_include_tax`)."""
    hub, engine = billing.hub, billing.engine
    state = hub.states.get(entity_id)
    if state is None or state.domain != "charger":
        raise ValueError(f"entity_id: no charger {entity_id}")
    attrs = state.attributes
    site = attrs.get("site") or engine.conf.get("site") or (hub.site.id if hub.site else None)
    who = await engine.who(id_token)
    charger_id = str(attrs.get("charge_point_id") or entity_id.partition(".")[2])
    name = engine.book.resolve(who, charger_id, entity_id, str(site) if site else None)
    plan = engine.book.get(name, engine.currency)
    period, per_kwh = plan.energy_period(hub.clock.now().astimezone(hub.time_zone))
    return {
        "entity_id": entity_id,
        "plan": plan.name,
        "label": plan.label or plan.name,
        "currency": plan.currency,
        "period": period,
        "energy_per_kwh": fmt(per_kwh),
        "session_fee": fmt(plan.session_fee),
        "time_per_minute": fmt(plan.time_per_minute),
        "idle_per_minute": fmt(plan.idle_per_minute),
        "idle_grace_minutes": fmt(plan.idle_grace_minutes),
        "tax_rate": fmt(plan.tax_rate),
        "prices_include_tax": plan.prices_include_tax,
    }
