"""CDRs on a real hub: a finished session becomes one immutable, reproducible CDR; corrections are
new records; plans follow the most specific assignment; running sessions show a live price.

Given a hub on the SimClock (Monday 2 March 2026, 06:00 UTC = 07:00 in Berlin) with the billing
plugin and a stand-in accounts plugin, when sessions are recorded the way the OCPP plugin
records them, then ...
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, text, update

from hub.charging.auth import pseudonym_key, pseudonymize
from hub.clock import SimClock
from hub.storage.sessions import SessionStore
from plugins.billing import store
from plugins.billing.cdr import recompute, same_price
from plugins.billing.store import BillingError
from plugins.billing.tables import cdrs
from tests.billing.support import FakeAccounts, billing_hub, record_session

D = Decimal
T8 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # 08:00 in Berlin

BILLING: dict[str, Any] = {
    "plans": {
        "standard": {
            "tax_rate": 19,
            "session_fee": 0.50,
            "energy": {
                "price": 0.30,
                "periods": [{"name": "peak", "start": "17:00", "end": "21:00", "price": 0.45}],
            },
        },
        "fleet": {"tax_rate": 19, "energy": 0.25},
        "fast": {"tax_rate": 19, "energy": 0.59},
        "group": {"tax_rate": 19, "energy": 0.20},
        "vip": {"tax_rate": 19, "energy": 0.10},
    },
    "assign": {
        "default": "standard",
        "chargers": {"hpc_01": "fast"},
        "organisations": {"acme": "fleet"},
        "groups": {"NIGHTSHIFT": "group"},
    },
    "estimate_interval": 60,
}
ACCOUNTS = {
    "04A1B2C3": {"account_id": "anna", "organisation_id": None, "group": None, "plan": None},
    "0FLEET01": {"account_id": "bob", "organisation_id": "acme", "group": None, "plan": None},
    "0GROUP01": {"account_id": "carl", "organisation_id": "acme", "group": "NIGHTSHIFT"},
    "0VIP0001": {"account_id": "dora", "organisation_id": "acme", "plan": "vip"},
}


async def cdr_list(hub: Any) -> list[Any]:
    return await hub.recorder.read(lambda conn: store.list_cdrs(conn))


async def test_a_finished_session_becomes_exactly_one_cdr(tmp_path: Path, clock: SimClock) -> None:
    accounts = FakeAccounts(ACCOUNTS)
    async with billing_hub(tmp_path, clock, BILLING, plugins={"accounts": accounts}) as hub:
        created = []
        hub.bus.listen("billing_cdr_created", lambda e: created.append(dict(e.data)))
        s = await record_session(hub, T8, [(0, 0), (30, 5_500), (60, 11_000)])
        [cdr] = await cdr_list(hub)
        # 11 kWh x 0.30 = 3.30 + session fee 0.50 = 3.80; VAT 0.722 -> 0.72; 4.52
        assert (cdr.net, cdr.tax, cdr.gross) == (D("3.80"), D("0.72"), D("4.52"))
        assert cdr.energy_wh == D("11000.000") and cdr.plan == "standard"
        assert cdr.account_id == cdr.bill_to == "anna" and cdr.session_id == s.id
        # who: the token's pseudonym, never the card number
        assert cdr.token == pseudonymize("04A1B2C3", pseudonym_key(hub)) != "04A1B2C3"
        assert "04A1B2C3" not in str(cdr.doc) and "04A1B2C3" not in str(created)
        assert [c["cdr_id"] for c in created] == [cdr.id] and created[0]["gross"] == "4.52"
        assert (
            cdr.doc["price"]["idle_s"] == "0" and cdr.doc["energy"]["method"] == "session_relative"
        )

        # The stop replayed, the event fired again, the service asked: still that one CDR.
        hub.bus.fire("session_stopped", {"session_id": s.id, "charger_id": "bay_01"})
        await hub.block_till_done()
        again = await hub.services.call("billing", "bill_session", {"session_id": s.id})
        assert again["cdr_id"] == cdr.id and len(await cdr_list(hub)) == 1


async def test_a_cdr_is_reproducible_from_the_recorded_readings(
    tmp_path: Path, clock: SimClock
) -> None:
    async with billing_hub(tmp_path, clock, BILLING) as hub:
        start = datetime(2026, 3, 2, 15, 10, tzinfo=UTC)  # 16:10 local, into the peak
        s = await record_session(
            hub, start, [(0, 2_000), (20, 4_000), (50, 7_000), (80, 9_500)], stop_after=95
        )
        [cdr] = await cdr_list(hub)
        sessions = SessionStore(hub.recorder)
        readings = await sessions.readings(s.id)
        again = recompute(cdr, await sessions.get(s.id), readings)
        assert same_price(again, cdr.breakdown)
        # 16:10-16:30 2,000 Wh and 16:30-17:00 3,000 Wh standard; the 17:00 reading sits on the
        # boundary; 17:00-17:30 2,500 Wh peak (then 15 idle minutes, no idle fee in this plan)
        assert [(x.period, x.quantity) for x in again.lines if x.kind == "energy"] == [
            ("standard", D("5")),
            ("peak", D("2.5")),
        ]
        report = await hub.services.call(
            "billing",
            "reconciliation",
            {"start": "2026-03-01T00:00:00+01:00", "end": "2026-04-01T00:00:00+02:00"},
        )
        assert report["cdrs_checked"] == 1 and report["cdrs_not_reproducible"] == []


async def test_cdrs_are_append_only_in_code_and_in_the_database(
    tmp_path: Path, clock: SimClock, db_url: str
) -> None:
    async with billing_hub(tmp_path, clock, BILLING, db_url=db_url) as hub:
        await record_session(hub, T8, [(0, 0), (60, 11_000)])
        [cdr] = await cdr_list(hub)
        own = [n for n, f in vars(store).items() if getattr(f, "__module__", "") == store.__name__]
        assert "insert_cdr" in own and not [n for n in own if "update" in n or "delete" in n]
        with pytest.raises(AttributeError):
            cdr.net = D("0")  # a frozen record
        engine = hub.recorder.engine
        for statement in (update(cdrs).values(net=D("0.01")), delete(cdrs)):
            with engine.connect() as conn, pytest.raises(Exception, match="append-only"):
                conn.execute(statement)
                conn.commit()
        with engine.connect() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text("UPDATE billing_ledger_postings SET amount = '0'"))
            conn.execute(text("DELETE FROM billing_invoices"))
            conn.execute(text("UPDATE billing_cdrs SET kind = 'x'"))
            conn.commit()
        [unchanged] = await cdr_list(hub)
        assert unchanged == cdr


async def test_a_correction_is_a_credit_and_a_new_record_never_an_edit(
    tmp_path: Path, clock: SimClock
) -> None:
    async with billing_hub(tmp_path, clock, BILLING) as hub:
        await record_session(hub, T8, [(0, 0), (60, 11_000)])
        [original] = await cdr_list(hub)
        credit, new = await hub.services.call(
            "billing",
            "correct_cdr",
            {"cdr_id": original.id, "reason": "wrong plan: fleet contract", "plan": "fleet"},
        )
        # the credit negates every amount of the original (OCPI credit CDR)
        assert credit["kind"] == "credit" and credit["credit_of"] == original.id
        assert (credit["net"], credit["gross"], credit["energy_kwh"]) == (
            "-3.80",
            "-4.52",
            "-11.000",
        )
        # the new record: 11 kWh x 0.25 = 2.75; VAT 0.5225 -> 0.52; 3.27
        assert new["kind"] == "correction" and new["replaces"] == original.id
        assert (new["net"], new["tax"], new["gross"]) == ("2.75", "0.52", "3.27")
        records = await cdr_list(hub)
        assert len(records) == 3 and original in records  # untouched
        with pytest.raises(BillingError, match="already credited"):
            await hub.services.call(
                "billing", "correct_cdr", {"cdr_id": original.id, "reason": "twice"}
            )
        with pytest.raises(BillingError, match="credit CDR cannot be corrected"):
            await hub.services.call(
                "billing", "correct_cdr", {"cdr_id": credit["cdr_id"], "reason": "no"}
            )


async def test_signed_meter_values_stay_with_the_cdr(tmp_path: Path, clock: SimClock) -> None:
    ocmf = {
        0: 'OCMF|{"FV":"1.0","RD":[{"RV":0.0,"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}]}'
        '|{"SD":"30450221"}',
        1: 'OCMF|{"FV":"1.0","RD":[{"RV":11.0,"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}]}'
        '|{"SD":"3046022100"}',
    }
    async with billing_hub(tmp_path, clock, BILLING) as hub:
        await record_session(hub, T8, [(0, 0), (60, 11_000)], signed=ocmf)
        [cdr] = await cdr_list(hub)
        kept = cdr.doc["signed_meter_values"]
        assert [v["signed_data"] for v in kept] == [ocmf[0], ocmf[1]]
        assert {v["encoding"] for v in kept} == {"OCMF"}
        ocpi = await hub.services.call("billing", "export_cdrs", {"format": "ocpi"})
        assert '"encoding_method":"OCMF"' in ocpi and '"nature":"Start"' in ocpi


async def test_without_an_accounts_plugin_the_account_is_unknown(
    tmp_path: Path, clock: SimClock
) -> None:
    async with billing_hub(tmp_path, clock, BILLING) as hub:
        await record_session(hub, T8, [(0, 0), (60, 1_000)])
        [cdr] = await cdr_list(hub)
        assert cdr.account_id is None and cdr.bill_to is None and cdr.plan == "standard"
        assert cdr.token is not None  # still identifiable by pseudonym


async def test_the_most_specific_plan_wins(tmp_path: Path, clock: SimClock) -> None:
    async with billing_hub(
        tmp_path,
        clock,
        BILLING,
        plugins={"accounts": FakeAccounts(ACCOUNTS)},
        site={"id": "depot", "max_current": 100},
    ) as hub:
        cases = [
            ("04A1B2C3", "bay_01", "standard"),
            ("04A1B2C3", "hpc_01", "fast"),
            ("0FLEET01", "hpc_01", "fleet"),
            ("0GROUP01", "bay_01", "group"),
            ("0VIP0001", "hpc_01", "vip"),
        ]
        for i, (tag, charger, _) in enumerate(cases):
            await record_session(
                hub, T8 + timedelta(hours=i), [(0, 0), (30, 1_000)], charger=charger, id_tag=tag
            )
        assert [c.plan for c in await cdr_list(hub)] == [p for _, _, p in cases]
        assert [c.bill_to for c in await cdr_list(hub)] == ["anna", "anna", "acme", "acme", "acme"]


async def test_a_running_session_shows_its_price_live(tmp_path: Path, clock: SimClock) -> None:
    async with billing_hub(tmp_path, clock, BILLING) as hub:
        updates = []
        hub.bus.listen("billing_cost_updated", lambda e: updates.append(dict(e.data)))
        sessions = SessionStore(hub.recorder)
        from tests.billing.support import registers, session

        s, _ = await sessions.start_session(session(clock.now(), None, meter_start=0))
        await sessions.add_readings(registers(s, [(clock.now() + timedelta(minutes=1), 0)]))
        await clock.advance(20 * 60)
        await sessions.add_readings(registers(s, [(clock.now(), 3_700)]))
        await clock.advance(60)
        await hub.block_till_done()
        state = hub.states.get("sensor.bay_01_1_session_cost")
        # 3.7 kWh x 0.30 = 1.11 + fee 0.50 = 1.61; VAT 0.3059 -> 0.31; 1.92
        assert state is not None and state.state == "1.92" and state.unit == "EUR"
        assert state.attributes["session_id"] == s.id and state.attributes["final"] is False
        assert updates[-1] == {
            "charger_id": "bay_01",
            "connector": 1,
            "entity_id": "charger.bay_01_1",
            "transaction_id": s.transaction_id,
            "session_id": s.id,
            "total": "1.92",
            "currency": "EUR",
        }
        estimate = await hub.services.call("billing", "estimate", {"session_id": s.id})
        assert estimate["running"] is True and estimate["total"] == "1.92"


async def test_sessions_that_stopped_while_billing_was_away_are_billed_at_start(
    tmp_path: Path, clock: SimClock
) -> None:
    async with billing_hub(tmp_path, clock, BILLING) as hub:
        assert await cdr_list(hub) == []  # billing is installed now
        await clock.advance(3600)
        # The session's stop was recorded but no CDR followed: the hub was killed in between
        # (here: the stop event never reached billing).
        s = await record_session(
            hub, clock.now() - timedelta(minutes=40), [(0, 0), (30, 2_000)], fire=False
        )
        assert await cdr_list(hub) == []
    async with billing_hub(tmp_path, clock, BILLING) as hub:
        await hub.block_till_done()
        [cdr] = await cdr_list(hub)
        assert cdr.session_id == s.id
