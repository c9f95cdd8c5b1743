"""Payments through providers (the `hub_payment_providers` hook): bank transfer with manual
reconciliation, card pre-authorization captured at stop, refunds; every movement in the ledger.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, insert, select, update

from plugins.billing import ledger, store
from plugins.billing.cdr import Cdr
from plugins.billing.money import ZERO, fmt, from_minor, to_minor
from plugins.billing.store import BillingError
from plugins.billing.tables import payments

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

AUTHORIZED = "authorized"  # card amount held, not yet taken
PENDING = "pending"  # waiting for the customer (3-D Secure) or the bank
CAPTURED = "captured"
CANCELED = "canceled"
RECEIVED = "received"  # a bank transfer booked by hand
FAILED = "failed"
ADHOC_PREFIX = "PAY"  # ad-hoc card tokens: PAY + 17 hex = 20 characters, OCPP 1.6's idTag limit


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """What a provider answered: its id for the payment, a neutral status, amounts in minor."""

    external_id: str
    status: str
    authorized_minor: int = 0
    captured_minor: int = 0
    client_secret: str | None = None  # for the customer's browser (3-D Secure); never logged
    refund_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


class PaymentProvider(Protocol):
    """What `register(name, factory)` in `hub_payment_providers` provides: `factory(hub, conf)`
    returns one of these. A provider without cards implements only `name` and `kind`."""

    name: str
    kind: str  # "invoice" (money arrives by transfer) or "card"

    async def preauthorize(
        self,
        amount_minor: int,
        currency: str,
        *,
        metadata: Mapping[str, str],
        payment_method: str | None,
        customer: str | None,
        key: str,
    ) -> ProviderResult: ...

    async def capture(self, external_id: str, amount_minor: int, key: str) -> ProviderResult: ...

    async def cancel(self, external_id: str, key: str) -> ProviderResult: ...

    async def refund(self, external_id: str, amount_minor: int, key: str) -> ProviderResult: ...

    async def close(self) -> None: ...


ProviderFactory = Callable[["Hub", Mapping[str, Any]], PaymentProvider]


class BankTransfer:
    """The invoice / bank transfer provider: the customer pays the invoice by transfer and an
    operator books what arrived (`billing.record_payment`); nothing to call out to."""

    kind = "invoice"

    def __init__(self, hub: Hub, conf: Mapping[str, Any]) -> None:
        self.name = str(conf.get("name", "invoice"))

    async def close(self) -> None:
        return None


class Payments:
    """The payments table and the ledger entries of every money movement."""

    def __init__(self, hub: Hub, providers: Mapping[str, PaymentProvider]) -> None:
        self.hub = hub
        self.providers = dict(providers)

    @property
    def _recorder(self) -> Any:
        assert self.hub.recorder is not None
        return self.hub.recorder

    def card(self, name: str | None = None) -> PaymentProvider:
        cards = {n: p for n, p in self.providers.items() if p.kind == "card"}
        provider = cards.get(name) if name else next(iter(cards.values()), None)
        if provider is None:
            raise BillingError(f"no card payment provider {name or ''} is configured".strip())
        return provider

    # --- bank transfer --------------------------------------------------------------------
    async def record_payment(
        self,
        invoice_key: str,
        amount: Decimal,
        *,
        provider: str = "invoice",
        reference: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Book money received for an invoice; the same bank reference booked twice is once."""
        now = self.hub.clock.now()
        if amount <= 0:
            raise BillingError("a payment is a positive amount")

        def fact(conn: Connection) -> dict[str, Any]:
            invoice = store.get_invoice(conn, invoice_key)
            if invoice is None:
                raise BillingError(f"no invoice {invoice_key!r}")
            external = f"{provider}:{reference}" if reference else None
            if external is not None:
                found = _by(conn, payments.c.external_id == external)
                if found is not None:
                    return found
            row = _row(
                provider,
                RECEIVED,
                invoice["currency"],
                amount,
                now,
                bill_to=invoice["bill_to"],
                invoice_id=invoice["id"],
                external_id=external,
                doc={"note": note, "reference": reference},
            )
            conn.execute(insert(payments).values(row))
            entry = ledger.payment(
                invoice["bill_to"], provider, invoice["currency"], amount, row["id"]
            )
            ledger.write_entry(conn, entry, now)
            return row

        return _public(await self._recorder.write_fact(fact))

    async def invoice_status(self, invoice_key: str) -> dict[str, Any]:
        def read(conn: Connection) -> dict[str, Any]:
            invoice = store.get_invoice(conn, invoice_key)
            if invoice is None:
                raise BillingError(f"no invoice {invoice_key!r}")
            paid = sum(
                (
                    p["amount"] - p["refunded"]
                    for p in conn.execute(
                        select(payments).where(payments.c.invoice_id == invoice["id"])
                    ).mappings()
                ),
                ZERO,
            )
            credited = -sum((c["gross"] for c in store.credit_notes_of(conn, invoice["id"])), ZERO)
            due = invoice["gross"] - credited - paid
            return {
                "number": invoice["number"],
                "gross": fmt(invoice["gross"]),
                "credited": fmt(credited),
                "paid": fmt(paid),
                "due": fmt(due),
                "status": "paid" if due <= 0 else ("partly_paid" if paid else "open"),
            }

        result: dict[str, Any] = await self._recorder.read(read)
        return result

    # --- cards ----------------------------------------------------------------------------
    async def preauthorize(
        self,
        amount: Decimal,
        currency: str,
        *,
        provider: str | None = None,
        charger: str | None = None,
        payment_method: str | None = None,
        customer: str | None = None,
    ) -> dict[str, Any]:
        """Hold `amount` on a card before an ad-hoc session; the answer's `id_tag` is the token
        the session starts with (a remote start), so its stop captures the final price."""
        card = self.card(provider)
        payment_id = uuid.uuid4().hex
        id_tag = ADHOC_PREFIX + secrets.token_hex(9)[:17].upper()
        metadata = {"evhub_payment": payment_id, "id_tag": id_tag, "charger": charger or ""}
        result = await card.preauthorize(
            to_minor(amount, currency),
            currency,
            metadata=metadata,
            payment_method=payment_method,
            customer=customer,
            key=f"preauth-{payment_id}",
        )
        now = self.hub.clock.now()
        row = _row(
            card.name,
            result.status,
            currency,
            ZERO,
            now,
            payment_id=payment_id,
            id_tag=id_tag,
            external_id=result.external_id,
            authorized=from_minor(result.authorized_minor, currency),
            doc={"charger": charger, "requested": fmt(amount)},
        )
        await self._recorder.write_fact(lambda conn: conn.execute(insert(payments).values(row)))
        return {**_public(row), "client_secret": result.client_secret}

    async def adhoc(self, id_tag: str | None) -> dict[str, Any] | None:
        """The card payment an ad-hoc token belongs to, if it is one of ours."""
        if not id_tag or not id_tag.upper().startswith(ADHOC_PREFIX):
            return None
        return await self._recorder.read(lambda c: _by(c, payments.c.id_tag == id_tag.upper()))

    async def attach_session(self, id_tag: str, session_id: str) -> None:
        """The session an ad-hoc token started: the token starts no second one."""
        now = self.hub.clock.now()
        await self._recorder.write_fact(
            lambda conn: conn.execute(
                update(payments)
                .where(payments.c.id_tag == id_tag.upper(), payments.c.session_id.is_(None))
                .values(session_id=session_id, updated_at=now)
            )
        )

    async def settle_session(self, cdr: Cdr, id_tag: str | None) -> dict[str, Any] | None:
        """At a session's stop: book the sale of an ad-hoc card session and capture its final
        price from the hold (all of the hold at most); nothing to take cancels the hold."""
        payment = await self.adhoc(id_tag)
        if payment is None:
            return None
        card, now = self.card(payment["provider"]), self.hub.clock.now()
        party = f"card:{payment['id']}"
        sale = ledger.sale(party, cdr.currency, cdr.net, cdr.tax, cdr.id, kind="sale")
        await self._recorder.write_fact(lambda conn: ledger.write_entry(conn, sale, now))
        if payment["status"] != AUTHORIZED:
            _LOGGER.warning(
                "payment %s is %s at the stop: nothing captured", payment["id"], payment["status"]
            )
            return payment
        take = min(cdr.gross, payment["authorized"] or ZERO)
        if take <= 0:
            await card.cancel(payment["external_id"], key=f"cancel-{payment['id']}")
            return await self._update(payment["id"], status=CANCELED, session_id=cdr.session_id)
        result = await card.capture(
            payment["external_id"], to_minor(take, cdr.currency), key=f"capture-{payment['id']}"
        )
        captured = from_minor(result.captured_minor, cdr.currency)
        await self.book_capture(payment["id"], captured, session_id=cdr.session_id)
        if captured < cdr.gross:
            _LOGGER.warning(
                "session %s cost %s but %s was held: %s left to collect",
                cdr.session_id,
                fmt(cdr.gross),
                fmt(captured),
                fmt(cdr.gross - captured),
            )
        return await self.get(payment["id"])

    async def book_correction(self, payment_id: str, *records: Cdr) -> None:
        """An ad-hoc session's corrected CDRs (credit and replacement) change what it owes."""
        now, party = self.hub.clock.now(), f"card:{payment_id}"
        entries = [ledger.sale(party, c.currency, c.net, c.tax, c.id, kind="sale") for c in records]

        def fact(conn: Connection) -> None:
            for entry in entries:
                ledger.write_entry(conn, entry, now)

        await self._recorder.write_fact(fact)

    async def book_capture(
        self, payment_id: str, captured: Decimal, *, session_id: str | None = None
    ) -> None:
        """Money taken from a hold (by us, or reported by the provider's webhook): once."""
        now = self.hub.clock.now()

        def fact(conn: Connection) -> None:
            p = _by(conn, payments.c.id == payment_id)
            if p is None:
                raise BillingError(f"no payment {payment_id!r}")
            entry = ledger.payment(
                f"card:{payment_id}",
                p["provider"],
                p["currency"],
                captured,
                payment_id,
                kind="capture",
            )
            ledger.write_entry(conn, entry, now)
            values: dict[str, Any] = {"status": CAPTURED, "amount": captured, "updated_at": now}
            if session_id is not None:
                values["session_id"] = session_id
            conn.execute(update(payments).where(payments.c.id == payment_id).values(values))

        await self._recorder.write_fact(fact)

    async def refund(self, payment_id: str, amount: Decimal | None = None) -> dict[str, Any]:
        payment = await self.get(payment_id)
        if payment is None:
            raise BillingError(f"no payment {payment_id!r}")
        left = payment["amount"] - payment["refunded"]
        amount = left if amount is None else amount
        if amount <= 0 or amount > left:
            raise BillingError(f"can refund at most {fmt(left)} {payment['currency']}")
        provider = self.providers.get(payment["provider"])
        if provider is None:
            raise BillingError(f"payment provider {payment['provider']} is not configured")
        refund_id = f"manual-{uuid.uuid4().hex[:12]}"
        if provider.kind == "card":
            n = int(self._refund_count(payment)) + 1
            result = await provider.refund(
                payment["external_id"],
                to_minor(amount, payment["currency"]),
                key=f"refund-{payment_id}-{n}",
            )
            refund_id = result.refund_id or refund_id
        await self.book_refund(payment_id, amount, refund_id)
        result_row = await self.get(payment_id)
        assert result_row is not None
        return result_row

    def _refund_count(self, payment: Mapping[str, Any]) -> int:
        return len(payment["doc"].get("refunds", []))

    async def book_refund(self, payment_id: str, amount: Decimal, refund_id: str) -> bool:
        """A refund (ours, or one made in the provider's dashboard): booked once per refund id."""
        now = self.hub.clock.now()

        def fact(conn: Connection) -> bool:
            p = _by(conn, payments.c.id == payment_id)
            if p is None:
                raise BillingError(f"no payment {payment_id!r}")
            if refund_id in {r["id"] for r in p["doc"].get("refunds", [])}:
                return False
            party = p["bill_to"] or f"card:{payment_id}"
            entry = ledger.refund(
                party, p["provider"], p["currency"], amount, payment_id, key=f"refund:{refund_id}"
            )
            ledger.write_entry(conn, entry, now)
            doc = {
                **p["doc"],
                "refunds": [
                    *p["doc"].get("refunds", []),
                    {"id": refund_id, "amount": fmt(amount), "at": now.isoformat()},
                ],
            }
            conn.execute(
                update(payments)
                .where(payments.c.id == payment_id)
                .values(refunded=p["refunded"] + amount, doc=doc, updated_at=now)
            )
            return True

        booked: bool = await self._recorder.write_fact(fact)
        return booked

    async def get(self, payment_id: str) -> dict[str, Any] | None:
        return await self._recorder.read(lambda conn: _by(conn, payments.c.id == payment_id))

    async def by_external(self, external_id: str) -> dict[str, Any] | None:
        return await self._recorder.read(lambda c: _by(c, payments.c.external_id == external_id))

    async def _update(self, payment_id: str, **values: Any) -> dict[str, Any] | None:
        values["updated_at"] = self.hub.clock.now()
        await self._recorder.write_fact(
            lambda conn: conn.execute(
                update(payments).where(payments.c.id == payment_id).values(values)
            )
        )
        return await self.get(payment_id)

    async def set_status(self, payment_id: str, status: str, authorized: Decimal | None) -> None:
        values: dict[str, Any] = {"status": status}
        if authorized is not None:
            values["authorized"] = authorized
        await self._update(payment_id, **values)

    async def close(self) -> None:
        for provider in self.providers.values():
            try:
                await provider.close()
            except Exception:
                _LOGGER.exception("payment provider %s did not close cleanly", provider.name)


def _row(
    provider: str,
    status: str,
    currency: str,
    amount: Decimal,
    now: datetime,
    *,
    payment_id: str | None = None,
    authorized: Decimal | None = None,
    **extra: Any,
) -> dict[str, Any]:
    row = {
        "id": payment_id or uuid.uuid4().hex,
        "provider": provider,
        "status": status,
        "bill_to": None,
        "invoice_id": None,
        "session_id": None,
        "id_tag": None,
        "external_id": None,
        "currency": currency,
        "authorized": authorized,
        "amount": amount,
        "refunded": ZERO,
        "created_at": now,
        "updated_at": now,
        "doc": {},
    }
    row.update(extra)
    return row


def _by(conn: Connection, condition: Any) -> dict[str, Any] | None:
    row = conn.execute(select(payments).where(condition)).mappings().first()
    return None if row is None else dict(row)


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    """A payment for a service answer: amounts as text, times as ISO."""
    out = {}
    for key, value in row.items():
        if isinstance(value, Decimal):
            value = fmt(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[key] = value
    return out


def status_from_stripe(status: str) -> str:
    return {
        "requires_capture": AUTHORIZED,
        "succeeded": CAPTURED,
        "canceled": CANCELED,
        "requires_payment_method": PENDING,
        "requires_confirmation": PENDING,
        "requires_action": PENDING,
        "processing": PENDING,
    }.get(status, FAILED)
