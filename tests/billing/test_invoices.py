"""Invoices: a month of simulated sessions invoiced end to end and checked to the cent against an
independent calculation; gap-free numbers under concurrency (two hubs on one database, SQLite
and PostgreSQL); HTML and PDF from overridable templates; credit notes; e-mail to a real SMTP
server on loopback.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from hub.clock import SimClock
from plugins.billing import ledger, store
from plugins.billing.store import BillingError
from plugins.billing.tables import invoices
from tests.billing.support import FakeAccounts, billing_hub, record_session

D = Decimal
BERLIN = ZoneInfo("Europe/Berlin")

# A tariff written for this test only: night, weekday peak and day prices, a session fee,
# charging time, idle after 45 minutes, a minimum and a maximum; and a fleet subscription.
TARIFF: dict[str, Any] = {
    "plans": {
        "public": {
            "tax_rate": 19,
            "session_fee": 0.35,
            "time": {"per_minute": 0.015},
            "idle": {"per_minute": 0.12, "grace_minutes": 45},
            "minimum": 1.50,
            "maximum": 40,
            "energy": {
                "price": 0.36,
                "periods": [
                    {"name": "night", "start": "23:00", "end": "06:00", "price": 0.24},
                    {
                        "name": "peak",
                        "start": "16:00",
                        "end": "20:00",
                        "days": ["mon", "tue", "wed", "thu", "fri"],
                        "price": 0.52,
                    },
                ],
            },
        },
        "fleet": {
            "tax_rate": 19,
            "energy": 0.32,
            "discounts": [{"on": "energy", "percent": 5, "name": "Fleet"}],
            "subscription": {"monthly_fee": 29, "included_kwh": 50, "name": "Fleet flat"},
        },
    },
    "assign": {"default": "public", "organisations": {"acme": "fleet"}},
    "issuer": {
        "name": "Depot Energy GmbH",
        "address": "Hafenstraße 1, 20457 Hamburg",
        "vat_id": "DE123456789",
        "iban": "DE02120300000000202051",
    },
    "customers": {"anna": {"name": "Anna Müller", "email": "anna@example.org"}},
    "invoices": {"auto_issue_after_days": None},
}
TOKENS = {
    "0A000001": {"account_id": "anna"},
    "0B000002": {"account_id": "ben"},
    "0C000003": {"account_id": "carl", "organisation_id": "acme"},
    "0D000004": {"account_id": "dora", "organisation_id": "acme"},
}


def cents(value: D) -> D:
    return value.quantize(D("0.01"), rounding=ROUND_HALF_UP)


@dataclass
class Sim:
    token: str
    start: datetime  # UTC
    power_w: int  # a multiple of 60: whole Wh per minute
    charge_min: int
    idle_min: int

    @property
    def stop(self) -> datetime:
        return self.start + timedelta(minutes=self.charge_min + self.idle_min)


def simulate_month(seed: int = 2026) -> list[Sim]:
    rng, sims = random.Random(seed), []
    for day in range(1, 32):
        for _ in range(rng.randint(2, 4)):
            hour = rng.randint(0, 15 if day == 31 else 22)
            start = datetime(2026, 3, day, hour, rng.randint(0, 59), tzinfo=BERLIN)
            sims.append(
                Sim(
                    token=rng.choice(sorted(TOKENS)),
                    start=start.astimezone(UTC),
                    power_w=rng.choice([3_720, 7_380, 11_040, 22_080]),
                    charge_min=rng.randint(3, 240),
                    idle_min=rng.choice([0, 10, 50, 120]) + rng.randint(0, 9),
                )
            )
    return sims


def points(sim: Sim, meter0: int) -> list[tuple[float, float]]:
    """Register readings every 5 minutes of the clock (as chargers with clock-aligned data)."""
    per_min = sim.power_w // 60
    first = sim.start + timedelta(minutes=5 - sim.start.minute % 5)
    out, t = [], first
    while t <= sim.stop:
        minutes = (t - sim.start).total_seconds() / 60
        out.append((minutes, meter0 + per_min * min(minutes, sim.charge_min)))
        t += timedelta(minutes=5)
    return out


# --- the independent calculation: minute by minute, no code from the plugin ------------------
def public_price(local: datetime) -> D:
    if local.hour >= 23 or local.hour < 6:
        return D("0.24")
    if 16 <= local.hour < 20 and local.weekday() < 5:
        return D("0.52")
    return D("0.36")


def expected_session(sim: Sim, fleet: bool) -> tuple[D, D]:
    """(net, kWh) of one session."""
    per_min = D(sim.power_w // 60)
    if fleet:
        kwh = per_min * sim.charge_min / 1000
        energy = cents(kwh * D("0.32"))
        return energy - cents(energy * D("0.05")), kwh
    wh_by_price: dict[D, D] = defaultdict(D)
    for m in range(sim.charge_min):
        wh_by_price[public_price((sim.start + timedelta(minutes=m)).astimezone(BERLIN))] += per_min
    net = sum((cents(wh / 1000 * price) for price, wh in wh_by_price.items()), D(0))
    # Charging ends at the first reading (5-minute mark) at or after the car stopped drawing, or
    # at the stop if that comes first.
    end = sim.start + timedelta(minutes=sim.charge_min)
    if end.minute % 5:
        end += timedelta(minutes=5 - end.minute % 5)
    end = min(end, sim.stop)
    charging_min = D(int((end - sim.start).total_seconds())) / 60
    idle_min = D(int((sim.stop - end).total_seconds())) / 60
    net += cents(charging_min * D("0.015"))
    if idle_min > 45:
        net += cents((idle_min - 45) * D("0.12"))
    net += D("0.35")
    net = max(D("1.50"), min(D("40.00"), net))
    return net, per_min * sim.charge_min / 1000


async def test_a_month_of_sessions_invoiced_equals_an_independent_calculation(
    tmp_path: Path,
) -> None:
    clock = SimClock(start=datetime(2026, 4, 2, 8, 0, tzinfo=UTC))
    sims = simulate_month()
    assert len(sims) > 80
    async with billing_hub(
        tmp_path, clock, TARIFF, plugins={"accounts": FakeAccounts(TOKENS)}
    ) as hub:
        meter = 1_000_000
        for sim in sims:
            total = (sim.power_w // 60) * sim.charge_min
            await record_session(
                hub,
                sim.start,
                points(sim, meter),
                stop_after=sim.charge_min + sim.idle_min,
                meter_start=meter,
                meter_stop=meter + total,
                id_tag=sim.token,
            )
            meter += total
        issued = await hub.services.call("billing", "issue_invoices", {"period": "2026-03"})
        cdrs = await hub.recorder.read(lambda conn: store.list_cdrs(conn))

    # Every CDR to the cent.
    by_start = {c.started_at: c for c in cdrs}
    parties: dict[str, D] = defaultdict(D)
    fleet_kwh = D(0)
    for sim in sims:
        fleet = TOKENS[sim.token].get("organisation_id") == "acme"
        net, kwh = expected_session(sim, fleet)
        cdr = by_start[sim.start]
        assert (cdr.net, cdr.tax) == (net, cents(net * D("0.19"))), (sim, cdr.doc["price"])
        party = "acme" if fleet else TOKENS[sim.token]["account_id"]
        parties[party] += net
        fleet_kwh += kwh if fleet else 0
    # The fleet's invoice: its sessions, the subscription, the included 50 kWh at the price
    # they were charged (0.32 less 5 %).
    parties["acme"] += D("29.00") - cents(min(D(50), fleet_kwh) * D("0.32") * D("0.95"))
    got = {i["bill_to"]: (D(i["net"]), D(i["tax"]), D(i["gross"])) for i in issued}
    want = {p: (n, cents(n * D("0.19")), n + cents(n * D("0.19"))) for p, n in parties.items()}
    assert got == want
    assert len({i["number"] for i in issued}) == 3


async def test_invoice_numbers_have_no_gaps_and_no_duplicates_under_concurrency(
    tmp_path: Path, clock: SimClock, db_url: str
) -> None:
    conf = {**TARIFF, "invoices": {"auto_issue_after_days": None, "yearly_series": False}}
    accounts = FakeAccounts({f"0E{i:06d}": {"account_id": f"p{i:02d}"} for i in range(12)})
    async with (
        billing_hub(
            tmp_path / "a", clock, conf, db_url=db_url, plugins={"accounts": accounts}
        ) as a,
        billing_hub(
            tmp_path / "b",
            clock,
            conf,
            db_url=db_url,
            plugins={"accounts": FakeAccounts(accounts.tokens)},
        ) as b,
    ):
        for i in range(12):
            await record_session(
                a,
                datetime(2026, 2, 10, 8, i, tzinfo=UTC),
                [(0, 0), (30, 2_000)],
                id_tag=f"0E{i:06d}",
            )

        # Numbers taken inside facts that sometimes fail after taking theirs: a rolled back
        # fact gives its number back.
        async def take(hub: Any, i: int) -> int:
            def fact(conn: Any) -> int:
                seq = store.next_seq(conn, "TEST-")
                if i % 5 == 0:
                    raise RuntimeError("rendering failed after the number was taken")
                return seq

            try:
                return await hub.recorder.write_fact(fact)
            except RuntimeError:
                return -1

        taken = await asyncio.gather(*(take(a if i % 2 else b, i) for i in range(40)))
        good = sorted(n for n in taken if n > 0)
        assert good == list(range(1, len(good) + 1)) and len(good) == 32

        # Both hubs run February's invoices at once: every party once, numbers 1..12.
        runs = await asyncio.gather(
            a.services.call("billing", "issue_invoices", {"period": "2026-02"}),
            b.services.call("billing", "issue_invoices", {"period": "2026-02"}),
        )
        numbers = sorted(i["number"] for run in runs for i in run)
        assert numbers == [f"INV-{n:06d}" for n in range(1, 13)]
        rows = await a.recorder.read(lambda c: c.execute(select(invoices.c.bill_to)).all())
        assert sorted(r[0] for r in rows) == [f"p{i:02d}" for i in range(12)]


async def test_invoice_documents_credit_notes_and_the_ledger(
    tmp_path: Path, clock: SimClock
) -> None:
    override = tmp_path / "templates"
    override.mkdir()
    (override / "invoice.html").write_text("<p>OUR OWN {{ doc.number }} {{ doc.gross }}</p>")
    conf = {**TARIFF, "templates": str(override)}
    async with billing_hub(
        tmp_path / "cfg", clock, conf, plugins={"accounts": FakeAccounts(TOKENS)}
    ) as hub:
        feb = datetime(2026, 2, 16, 7, 0, tzinfo=UTC)  # a Monday, 08:00 local
        await record_session(hub, feb, [(0, 0), (60, 11_040)], id_tag="0A000001")
        [inv] = await hub.services.call("billing", "issue_invoices", {"period": "2026-02"})
        # 11.04 kWh x 0.36 = 3.9744 -> 3.97; 60 min x 0.015 = 0.90; fee 0.35 -> net 5.22
        # VAT 0.9918 -> 0.99; gross 6.21
        assert (inv["number"], inv["net"], inv["tax"], inv["gross"]) == (
            "INV-2026-000001",
            "5.22",
            "0.99",
            "6.21",
        )
        office = hub.data["billing"].office
        html = (await office.files(inv["number"], "html")).decode()
        assert html == "<p>OUR OWN INV-2026-000001 6.21</p>"  # the site's template
        pdf = await office.files(inv["invoice_id"], "pdf")
        assert pdf.startswith(b"%PDF-") and b"INV-2026-000001" in pdf  # default PDF template
        assert await office.files(inv["number"], "pdf") == pdf  # archived, not re-rendered
        # A partial credit, then the rest; never more than the invoice.
        cn1 = await hub.services.call(
            "billing",
            "credit_note",
            {
                "invoice": inv["number"],
                "reason": "goodwill",
                "lines": [{"amount": 1.00, "tax_rate": 19, "description": "Goodwill"}],
            },
        )
        assert (cn1["number"], cn1["net"], cn1["tax"], cn1["gross"]) == (
            "CN-2026-000001",
            "-1.00",
            "-0.19",
            "-1.19",
        )
        with pytest.raises(BillingError, match="exceeds"):
            await hub.services.call(
                "billing", "credit_note", {"invoice": inv["number"], "reason": "all of it again"}
            )
        status = await hub.services.call("billing", "invoice_status", {"invoice": inv["number"]})
        assert status == {
            "number": "INV-2026-000001",
            "gross": "6.21",
            "credited": "1.19",
            "paid": "0",
            "due": "5.02",
            "status": "open",
        }
        paid = await hub.services.call(
            "billing",
            "record_payment",
            {"invoice": inv["number"], "amount": "5.02", "reference": "BANK-0001"},
        )
        again = await hub.services.call(
            "billing",
            "record_payment",
            {"invoice": inv["number"], "amount": "5.02", "reference": "BANK-0001"},
        )
        assert again["id"] == paid["id"]  # the same bank line booked twice is booked once
        status = await hub.services.call("billing", "invoice_status", {"invoice": inv["number"]})
        assert status["status"] == "paid" and status["due"] == "0.00"
        books = await hub.services.call("billing", "ledger", {})
        balances = {b["account"]: b["balance"] for b in books["balances"]}
        # invoice +6.21 owed, credit note -1.19, transfer -5.02: anna owes nothing
        assert "receivable:anna" not in balances or balances["receivable:anna"] == "0.00"
        assert balances["revenue"] == "-4.22" and balances["tax_payable"] == "-0.80"
        assert balances["cash:invoice"] == "5.02" and books["trial_balance"] == {"EUR": "0.00"}
        assert await hub.recorder.read(ledger.entry_count) == 3


class Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_invoices_are_e_mailed_with_their_pdf(tmp_path: Path, clock: SimClock) -> None:
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    # Anna's name and address come from the accounts plugin (accounts.get_account) this time.
    conf = {
        **TARIFF,
        "customers": {},
        "email": {"sender": "billing@depot.example", "port": port, "host": "127.0.0.1"},
        "invoices": {"auto_issue_after_days": None, "email": True},
    }
    try:
        contacts = {"anna": {"name": "Anna Müller", "email": "anna@example.org"}}
        async with billing_hub(
            tmp_path, clock, conf, plugins={"accounts": FakeAccounts(TOKENS, contacts)}
        ) as hub:
            feb = datetime(2026, 2, 16, 7, 0, tzinfo=UTC)
            await record_session(hub, feb, [(0, 0), (60, 11_040)], id_tag="0A000001")
            await hub.services.call("billing", "issue_invoices", {"period": "2026-02"})
    finally:
        await asyncio.to_thread(controller.stop)
    [msg] = sink.messages
    assert msg["To"] == "anna@example.org" and "INV-2026-000001" in msg["Subject"]
    assert msg["Date"] == "Mon, 02 Mar 2026 06:00:00 +0000"  # the hub clock's time
    parts = {p.get_content_type(): p for p in msg.walk()}
    assert parts["application/pdf"].get_filename() == "INV-2026-000001.pdf"
    assert parts["application/pdf"].get_payload(decode=True).startswith(b"%PDF-")
    assert "Anna Müller" in parts["text/html"].get_payload(decode=True).decode()
