"""Payments: a card held before ad-hoc charging and captured at the stop with the final price,
refunds, Stripe webhooks checked with Stripe's own signature code (against a local stand-in of
the Stripe API), and a double-entry ledger whose totals always balance.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from hub.charging.auth import AuthorizationStatus, IdToken, authorize
from hub.clock import SimClock
from plugins.billing import ledger
from plugins.billing.ledger import Entry, Posting, UnbalancedEntry
from plugins.billing.tables import metadata
from tests.billing.stripe_stub import (
    API_KEY,
    CARD_3DS,
    CARD_DECLINED,
    CARD_OK,
    WEBHOOK_SECRET,
    signed_event,
    stripe_stub,
)
from tests.billing.support import billing_hub, record_session

D = Decimal
T8 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
BAY = "charger.bay_01_1"


def conf(api_base: str) -> dict[str, Any]:
    return {
        "plans": {"adhoc": {"tax_rate": 19, "session_fee": 0.50, "energy": 0.49}},
        "assign": {"default": "adhoc"},
        "payments": {
            "invoice": {},
            "stripe": {
                "api_key": API_KEY,
                "webhook_secret": WEBHOOK_SECRET,
                "api_base": api_base,
                "preauthorize_amount": 30,
                "webhook_listen": {"host": "127.0.0.1", "port": 0},
            },
        },
        "invoices": {"auto_issue_after_days": None},
    }


async def balances(hub: Any) -> dict[str, str]:
    books = await hub.services.call("billing", "ledger", {})
    assert books["trial_balance"] in ({}, {"EUR": "0.00"}, {"EUR": "0"})
    return {b["account"]: b["balance"] for b in books["balances"] if D(b["balance"])}


async def test_a_card_is_held_before_charging_and_charged_the_final_price_at_the_stop(
    tmp_path: Path, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with stripe_stub() as stub, billing_hub(tmp_path, clock, conf(stub.url)) as hub:
        held = await hub.services.call(
            "billing", "preauthorize", {"payment_method": CARD_OK, "charger": BAY}
        )
        assert held["status"] == "authorized" and held["authorized"] == "30.00"
        assert held["id_tag"].startswith("PAY") and len(held["id_tag"]) == 20
        [(_, path, params, key)] = stub.requests
        assert path == "/v1/payment_intents" and params["capture_method"] == "manual"
        assert params["amount"] == "3000" and params["currency"] == "eur" and key
        # The hold is what lets the ad-hoc token charge, here and nowhere else.
        token = IdToken(held["id_tag"])
        assert (await authorize(hub, token, BAY)).status is AuthorizationStatus.ACCEPTED
        other = await authorize(hub, token, "charger.bay_02_1")
        assert other.status is AuthorizationStatus.NOT_AT_THIS_LOCATION

        await record_session(hub, T8, [(0, 0), (60, 11_000)], id_tag=held["id_tag"])
        # 11 kWh x 0.49 = 5.39 + 0.50 = 5.89; VAT 1.1191 -> 1.12; 7.01: captured, not 30.00
        _, path, params, _ = stub.requests[-1]
        assert path.endswith("/capture") and params == {"amount_to_capture": "701"}
        payment = await hub.data["billing"].payments.get(held["id"])
        assert payment["status"] == "captured" and payment["amount"] == D("7.01")
        assert (await authorize(hub, token, BAY)).status is AuthorizationStatus.INVALID
        ocpi = json.loads(await hub.services.call("billing", "export_cdrs", {"format": "ocpi"}))
        assert ocpi[0]["cdr_token"]["type"] == "AD_HOC_USER" and ocpi[0]["auth_method"] == "COMMAND"
        books = await balances(hub)
        assert books == {"cash:stripe": "7.01", "revenue": "-5.89", "tax_payable": "-1.12"}

        refunded = await hub.services.call(
            "billing", "refund", {"payment_id": held["id"], "amount": "1.00"}
        )
        assert refunded["refunded"] == "1.00" and stub.refunds
        with pytest.raises(Exception, match=r"at most 6\.01"):
            await hub.services.call(
                "billing", "refund", {"payment_id": held["id"], "amount": "7.00"}
            )
        books = await balances(hub)
        assert books["cash:stripe"] == "6.01" and books[f"receivable:card:{held['id']}"] == "1.00"
    assert API_KEY not in caplog.text and WEBHOOK_SECRET not in caplog.text


async def test_stripe_webhooks_are_verified_deduplicated_and_applied(
    tmp_path: Path, clock: SimClock
) -> None:
    async with stripe_stub() as stub, billing_hub(tmp_path, clock, conf(stub.url)) as hub:
        billing = hub.data["billing"]
        url = f"http://127.0.0.1:{billing.stripe_webhooks.port}/stripe/webhook"
        # 3-D Secure: the hold waits for the customer; the token may not charge yet.
        held = await hub.services.call("billing", "preauthorize", {"payment_method": CARD_3DS})
        assert held["status"] == "pending"
        token = IdToken(held["id_tag"])
        assert (await authorize(hub, token, BAY)).status is AuthorizationStatus.INVALID
        intent = stub.intents[held["external_id"]]
        intent.update(status="requires_capture", amount_capturable=3000)
        now = int(clock.now().timestamp())
        event = {
            "id": "evt_1",
            "object": "event",
            "type": "payment_intent.amount_capturable_updated",
            "created": now,
            "data": {"object": intent},
        }
        body, signature = signed_event(event, now)
        async with aiohttp.ClientSession() as http:

            async def post(data: bytes, sig: str) -> tuple[int, Any]:
                async with http.post(url, data=data, headers={"Stripe-Signature": sig}) as r:
                    return r.status, await r.json()

            assert await post(body, signature) == (
                200,
                {"event": "evt_1", "type": event["type"], "applied": True},
            )
            assert (await authorize(hub, token, BAY)).status is AuthorizationStatus.ACCEPTED
            status, again = await post(body, signature)
            assert status == 200 and again["duplicate"] is True
            # Tampered, wrongly signed, or replayed an hour later: refused.
            assert (await post(body.replace(b"3000", b"9999"), signature))[0] == 400
            assert (await post(*signed_event(event, now, "whsec_other_secret_000000")))[0] == 400
            status, stale = await post(*signed_event({**event, "id": "evt_2"}, now - 3600))
            assert status == 400 and "from the hub's clock" in stale["error"]

            # A refund made in Stripe's dashboard is booked once, by its refund id.
            await record_session(hub, T8, [(0, 0), (60, 11_000)], id_tag=held["id_tag"])
            charge = {
                "id": "ch_1",
                "object": "charge",
                "payment_intent": held["external_id"],
                "refunds": {"data": [{"id": "re_dash", "amount": 250, "status": "succeeded"}]},
            }
            refund_event = {
                "id": "evt_3",
                "type": "charge.refunded",
                "created": now,
                "data": {"object": charge},
            }
            assert (await post(*signed_event(refund_event, now)))[1]["applied"] is True
            assert (await post(*signed_event({**refund_event, "id": "evt_4"}, now)))[0] == 200
        payment = await billing.payments.get(held["id"])
        assert payment["refunded"] == D("2.50") and len(payment["doc"]["refunds"]) == 1
        assert (await balances(hub))["cash:stripe"] == "4.51"  # 7.01 captured - 2.50


async def test_a_hold_too_small_or_not_needed(tmp_path: Path, clock: SimClock) -> None:
    async with stripe_stub() as stub, billing_hub(tmp_path, clock, conf(stub.url)) as hub:
        small = await hub.services.call(
            "billing", "preauthorize", {"payment_method": CARD_OK, "amount": 5}
        )
        await record_session(hub, T8, [(0, 0), (60, 11_000)], id_tag=small["id_tag"])
        payment = await hub.data["billing"].payments.get(small["id"])
        assert payment["amount"] == D("5.00")  # all of the hold; 2.01 is left to collect
        books = await balances(hub)
        assert books[f"receivable:card:{small['id']}"] == "2.01"
        unused = await hub.services.call("billing", "preauthorize", {"payment_method": CARD_OK})
        await record_session(hub, T8, [(0, 0), (10, 0)], id_tag=unused["id_tag"])
        payment = await hub.data["billing"].payments.get(unused["id"])
        assert payment["status"] == "canceled" and stub.requests[-1][1].endswith("/cancel")
        with pytest.raises(Exception, match="declined"):
            await hub.services.call("billing", "preauthorize", {"payment_method": CARD_DECLINED})


# --- the ledger always balances ----------------------------------------------------------------
amounts = st.decimals(min_value=D("0.01"), max_value=D("5000"), places=2)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("invoice"), st.sampled_from("abc"), amounts, amounts),
        st.tuples(st.just("credit"), st.sampled_from("abc"), amounts, amounts),
        st.tuples(st.just("payment"), st.sampled_from("abc"), amounts, st.just(D(0))),
        st.tuples(st.just("refund"), st.sampled_from("abc"), amounts, st.just(D(0))),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=operations, currency=st.sampled_from(["EUR", "CHF"]))
def test_the_ledger_balances_whatever_happens(ops: list[Any], currency: str) -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    expected: dict[str, D] = defaultdict(D)
    now = datetime(2026, 3, 2, tzinfo=UTC)
    with engine.begin() as conn:
        for i, (kind, party, x, y) in enumerate(ops):
            ref = f"r{i}"
            if kind == "invoice":
                entry = ledger.sale(party, currency, x, y, ref)
                expected[party] += x + y
            elif kind == "credit":
                entry = ledger.sale(party, currency, -x, -y, ref, kind="credit_note")
                expected[party] -= x + y
            elif kind == "payment":
                entry = ledger.payment(party, "bank", currency, x, ref)
                expected[party] -= x
            else:
                entry = ledger.refund(party, "bank", currency, x, ref)
                expected[party] += x
            ledger.write_entry(conn, entry, now)
            ledger.write_entry(conn, entry, now)  # a retry writes nothing twice
        books = ledger.balances(conn)
        assert all(v == 0 for v in ledger.trial_balance(conn).values())
    for party in "abc":
        assert books.get((ledger.receivable(party), currency), D(0)) == expected[party]


def test_an_unbalanced_or_float_entry_is_refused() -> None:
    with pytest.raises(UnbalancedEntry):
        Entry(
            "invoice",
            "x",
            (Posting("receivable:a", "EUR", D("1.00")), Posting("revenue", "EUR", D("-0.99"))),
        )
    with pytest.raises(UnbalancedEntry):  # balanced in total, not per currency
        Entry("fx", "x", (Posting("cash:a", "EUR", D("1")), Posting("cash:b", "CHF", D("-1"))))
    with pytest.raises(TypeError, match="Decimal"):
        Entry(
            "invoice",
            "x",
            (
                Posting("receivable:a", "EUR", 1.0),  # type: ignore[arg-type]
                Posting("revenue", "EUR", -1.0),
            ),
        )  # type: ignore[arg-type]
