"""Billing with the real accounts plugin: who a session is billed to, which plan, and where the
invoice goes, asked only through its services (`accounts.lookup_token`, `accounts.get_account`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import PluginHost
from plugins import accounts
from plugins import billing as billing_plugin
from plugins.billing import store
from tests.billing.support import record_session, write_config

BILLING: dict[str, Any] = {
    "plans": {
        "public": {"tax_rate": 19, "energy": 0.40},
        "fleet": {"tax_rate": 19, "energy": 0.30},
    },
    "assign": {"default": "public"},
    "invoices": {"auto_issue_after_days": None},
}
ACCOUNTS: dict[str, Any] = {
    "organisations": [{"id": "acme", "name": "ACME Logistics", "plan": "fleet"}],
    "accounts": [
        {"id": "anna", "name": "Anna Müller", "email": "anna@example.org"},
        {"id": "bob", "name": "Bob", "organisation": "acme"},
    ],
    "tokens": [{"id": "04A1B2C3", "account": "anna"}, {"id": "0B0B0B0B", "account": "bob"}],
}


@contextlib.asynccontextmanager
async def hub_with_accounts(config_dir: Path, clock: SimClock) -> AsyncIterator[Hub]:
    write_config(config_dir, BILLING, accounts=ACCOUNTS)
    host = PluginHost()
    host.register("accounts", accounts)
    host.register("billing", billing_plugin)
    hub = create_hub(config_dir, clock=clock, host=host)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def test_sessions_are_billed_to_the_accounts_the_accounts_plugin_knows(
    tmp_path: Path, clock: SimClock
) -> None:
    async with hub_with_accounts(tmp_path, clock) as hub:
        start = datetime(2026, 2, 16, 7, 0, tzinfo=UTC)
        await record_session(hub, start, [(0, 0), (60, 10_000)], id_tag="04a1b2c3")
        await record_session(hub, start, [(0, 0), (60, 10_000)], id_tag="0B0B0B0B")
        await record_session(hub, start, [(0, 0), (60, 10_000)], id_tag="DEADBEEF")
        cdrs = await hub.recorder.read(lambda conn: store.list_cdrs(conn))
        who = sorted((c.account_id or "-", c.bill_to or "-", c.plan, str(c.net)) for c in cdrs)
        # anna: public 10 kWh x 0.40; bob's organisation has the fleet plan: 10 x 0.30; an
        # unknown card: nobody to bill, priced with the plan of the place
        assert who == [
            ("-", "-", "public", "4.00"),
            ("anna", "anna", "public", "4.00"),
            ("bob", "acme", "fleet", "3.00"),
        ]
        issued = await hub.services.call("billing", "issue_invoices", {"period": "2026-02"})
        assert sorted(i["bill_to"] for i in issued) == ["acme", "anna"]
        anna = next(i for i in issued if i["bill_to"] == "anna")
        row = await hub.recorder.read(lambda conn: store.get_invoice(conn, anna["invoice_id"]))
        assert row["doc"]["customer"]["email"] == "anna@example.org"


async def test_a_quote_names_the_plan_and_prices_a_token_would_get_on_a_charger(
    tmp_path: Path, clock: SimClock
) -> None:
    async with hub_with_accounts(tmp_path, clock) as hub:
        hub.states.set("charger.bay_01_1", "available", attributes={"charge_point_id": "bay_01"})
        quote = await hub.services.call(
            "billing", "quote", {"entity_id": "charger.bay_01_1", "id_token": "04A1B2C3"}
        )
        assert (quote["plan"], quote["energy_per_kwh"], quote["currency"]) == (
            "public",
            "0.4",
            "EUR",
        )
        assert quote["tax_rate"] == "19" and quote["prices_include_tax"] is False
        fleet = await hub.services.call(
            "billing", "quote", {"entity_id": "charger.bay_01_1", "id_token": "0B0B0B0B"}
        )
        assert (fleet["plan"], fleet["energy_per_kwh"]) == ("fleet", "0.3")
        anonymous = await hub.services.call("billing", "quote", {"entity_id": "charger.bay_01_1"})
        assert anonymous["plan"] == "public"
        with pytest.raises(ValueError, match="no charger"):
            await hub.services.call("billing", "quote", {"entity_id": "charger.nope"})
