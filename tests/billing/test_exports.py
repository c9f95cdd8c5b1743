"""Exports for ERP and fleet systems (CSV, JSON, OCPI 2.2.1), pseudonymized unless an admin asks;
signed webhooks retried on the hub clock until a receiver takes them; the reconciliation report.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from hub.charging.auth import pseudonym_key, pseudonymize
from hub.charging.session import REGISTER, MeterReading
from hub.clock import SimClock
from hub.storage.sessions import SessionStore
from plugins.billing.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify
from tests.billing.support import FakeAccounts, billing_hub, record_session

T8 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
SECRET = "erp-shared-secret-0123456789"
BILLING: dict[str, Any] = {
    "plans": {
        "standard": {
            "tax_rate": 19,
            "session_fee": 0.5,
            "energy": 0.30,
            "idle": {"per_minute": 0.1, "grace_minutes": 10},
        }
    },
    "assign": {"default": "standard"},
    "ocpi": {
        "country_code": "DE",
        "party_id": "EVH",
        "evse_id_prefix": "DE*EVH*E",
        "location": {
            "id": "depot",
            "name": "Depot",
            "address": "Hafenstraße 1",
            "city": "Hamburg",
            "postal_code": "20457",
            "country": "DEU",
            "latitude": "53.5438",
            "longitude": "9.9663",
        },
    },
    "invoices": {"auto_issue_after_days": None},
}
ACCOUNTS = {"04A1B2C3": {"account_id": "anna"}, "=CMD()": {"account_id": "mallory"}}

# OCPI 2.2.1, module CDRs, 10.3.1 CDR object and the classes it uses: every property name.
OCPI_CDR = {
    "country_code",
    "party_id",
    "id",
    "start_date_time",
    "end_date_time",
    "session_id",
    "cdr_token",
    "auth_method",
    "authorization_reference",
    "cdr_location",
    "meter_id",
    "currency",
    "tariffs",
    "charging_periods",
    "signed_data",
    "total_cost",
    "total_fixed_cost",
    "total_energy",
    "total_energy_cost",
    "total_time",
    "total_time_cost",
    "total_parking_time",
    "total_parking_cost",
    "total_reservation_cost",
    "remark",
    "invoice_reference_id",
    "credit",
    "credit_reference_id",
    "home_charging_compensation",
    "last_updated",
}
OCPI_REQUIRED = {
    "country_code",
    "party_id",
    "id",
    "start_date_time",
    "end_date_time",
    "cdr_token",
    "auth_method",
    "cdr_location",
    "currency",
    "charging_periods",
    "total_cost",
    "total_energy",
    "total_time",
    "last_updated",
}
CDR_TOKEN = {"country_code", "party_id", "uid", "type", "contract_id"}
CDR_LOCATION = {
    "id",
    "name",
    "address",
    "city",
    "postal_code",
    "state",
    "country",
    "coordinates",
    "evse_uid",
    "evse_id",
    "connector_id",
    "connector_standard",
    "connector_format",
    "connector_power_type",
}
CHARGING_PERIOD = {"start_date_time", "dimensions", "tariff_id"}
DIMENSION_TYPES = {
    "CURRENT",
    "ENERGY",
    "ENERGY_EXPORT",
    "ENERGY_IMPORT",
    "MAX_CURRENT",
    "MIN_CURRENT",
    "MAX_POWER",
    "MIN_POWER",
    "PARKING_TIME",
    "POWER",
    "RESERVATION_TIME",
    "STATE_OF_CHARGE",
    "TIME",
}


async def test_cdr_exports_in_csv_json_and_ocpi_with_pseudonyms(
    tmp_path: Path, clock: SimClock
) -> None:
    async with billing_hub(
        tmp_path, clock, BILLING, plugins={"accounts": FakeAccounts(ACCOUNTS)}
    ) as hub:
        raw_seen = []
        hub.bus.listen("billing_raw_ids_exported", lambda e: raw_seen.append(dict(e.data)))
        await record_session(hub, T8, [(0, 0), (60, 11_000)], stop_after=90)
        await record_session(hub, T8 + timedelta(hours=2), [(0, 0), (30, 2_000)], id_tag="=CMD()")
        cdr_id = await hub.services.call("billing", "export_cdrs", {"format": "json"})
        first = json.loads(cdr_id)[0]["cdr_id"]
        await hub.services.call("billing", "correct_cdr", {"cdr_id": first, "reason": "meter"})
        pseudonym = pseudonymize("04A1B2C3", pseudonym_key(hub))

        text = await hub.services.call("billing", "export_cdrs", {"format": "csv"})
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["kind"] for r in rows] == ["cdr", "credit", "correction", "cdr"]
        assert rows[0]["token"] == pseudonym and "04A1B2C3" not in text
        # 11 kWh x 0.30 = 3.30 + 0.50; idle 30 min - 10 grace = 20 x 0.10 = 2.00 -> 5.80
        assert (rows[0]["net"], rows[0]["tax"], rows[0]["gross"]) == ("5.80", "1.10", "6.90")
        assert rows[1]["gross"] == "-6.90" and rows[1]["credit_of"] == first
        assert rows[0]["energy_kwh"] == "11.000" and rows[0]["idle_minutes"] == "30.00"

        raw = await hub.services.call("billing", "export_cdrs_raw", {"format": "csv"})
        raw_rows = list(csv.DictReader(io.StringIO(raw)))
        assert raw_rows[0]["token"] == "04A1B2C3"
        assert raw_rows[3]["token"] == "'=CMD()"  # no formula reaches a spreadsheet
        assert raw_seen == [{"user_id": None, "records": 4}]

        ocpi = json.loads(await hub.services.call("billing", "export_cdrs", {"format": "ocpi"}))
        for record in ocpi:
            assert OCPI_REQUIRED <= set(record) <= OCPI_CDR
            assert set(record["cdr_token"]) == CDR_TOKEN
            assert set(record["cdr_location"]) <= CDR_LOCATION
            assert len(record["id"]) <= 39 and len(record["session_id"]) <= 36
            for period in record["charging_periods"]:
                assert set(period) <= CHARGING_PERIOD
                assert {d["type"] for d in period["dimensions"]} <= DIMENSION_TYPES
        cdr, credit = ocpi[0], ocpi[1]
        assert cdr["cdr_token"]["uid"] == pseudonym and cdr["auth_method"] == "WHITELIST"
        assert cdr["total_cost"] == {"excl_vat": 5.80, "incl_vat": 6.90}  # JSON numbers
        assert cdr["total_energy"] == 11 and cdr["total_time"] == 1.5
        assert cdr["total_parking_time"] == 0.5 and cdr["total_parking_cost"]["excl_vat"] == 2
        assert cdr["cdr_location"]["evse_id"] == "DE*EVH*Ebay_01-1"
        assert cdr["start_date_time"] == "2026-03-02T07:00:00Z"
        assert credit["credit"] is True and credit["credit_reference_id"] == cdr["id"]
        assert credit["total_cost"] == {"excl_vat": -5.80, "incl_vat": -6.90}
        assert "credit" not in ocpi[2]

        issued = await hub.services.call("billing", "issue_invoices", {"period": "2026-03"})
        [inv] = [i for i in issued if i["bill_to"] == "anna"]
        invoices_csv = await hub.services.call("billing", "export_invoices", {"format": "csv"})
        assert inv["number"] in invoices_csv and "anna" in invoices_csv
        after = json.loads(await hub.services.call("billing", "export_cdrs", {"format": "json"}))
        assert {r["invoice"] for r in after if r["token"] == pseudonym} == {inv["number"]}


async def test_signed_webhooks_are_retried_with_backoff_until_delivered(
    tmp_path: Path, clock: SimClock
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    failures = {"left": 2}

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=503)
        received.append((dict(request.headers), body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    conf = {
        **BILLING,
        "webhooks": [
            {
                "name": "erp",
                "url": f"http://127.0.0.1:{port}/hooks",
                "secret": SECRET,
                "events": ["cdr_created"],
                "backoff": 30,
            }
        ],
    }
    try:
        async with billing_hub(tmp_path, clock, conf) as hub:
            sender = hub.data["billing"].webhooks
            await record_session(hub, T8, [(0, 0), (60, 11_000)])
            await hub.block_till_done()
            [row] = await sender.deliveries()
            assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 503")
            # The first retry waits 30 s, the second 60 s: on the hub's clock, not the wall's.
            assert row["next_attempt_at"] == clock.now() + timedelta(seconds=30)
            await clock.advance(29)
            await hub.block_till_done()
            assert received == [] and (await sender.deliveries())[0]["attempts"] == 1
            await clock.advance(1)
            await hub.block_till_done()
            assert (await sender.deliveries())[0]["attempts"] == 2 and received == []
            await clock.advance(60)
            await hub.block_till_done()
            [row] = await sender.deliveries()
            assert (row["status"], row["attempts"]) == ("delivered", 3)
            now = clock.now().timestamp()
    finally:
        await runner.cleanup()
    [(headers, body)] = received
    assert headers[EVENT_HEADER] == "cdr_created" and headers[DELIVERY_HEADER] == row["delivery_id"]
    assert verify(SECRET, headers[SIGNATURE_HEADER], body, now)
    assert not verify(SECRET, headers[SIGNATURE_HEADER], body + b" ", now)
    assert not verify(SECRET, headers[SIGNATURE_HEADER], body, now + 3600)  # a replay, later
    payload = json.loads(body)
    assert payload["event"] == "cdr_created" and payload["data"]["gross"] == "4.52"
    assert "04A1B2C3" not in body.decode()


async def test_reconciliation_flags_unbilled_energy_and_compares_the_site_meter(
    tmp_path: Path, clock: SimClock
) -> None:
    conf = {**BILLING, "reconciliation": {"site_meter": "sensor.site_charging_energy"}}
    async with billing_hub(tmp_path, clock, conf) as hub:
        hub.states.set("sensor.site_charging_energy", 1000.0, unit="kWh")
        await record_session(hub, T8, [(0, 100_000), (60, 111_000)], charger="bay_01")
        await record_session(hub, T8, [(0, 50_000), (60, 60_000)], charger="bay_02")
        # bay_02 then delivers 5 kWh with no session (a charger in free-vend mode): metered,
        # never billed.
        SessionStore(hub.recorder).queue_readings(
            [MeterReading("bay_02", 1, T8 + timedelta(hours=2), REGISTER, 65_000.0, "Wh")]
        )
        await clock.advance(4 * 3600)
        hub.states.set("sensor.site_charging_energy", 1027.0, unit="kWh")
        await hub.recorder.flush()
        report = await hub.services.call(
            "billing",
            "reconciliation",
            {"start": "2026-03-02T06:00:00+00:00", "end": clock.now().isoformat()},
        )
    chargers = {c["charger_id"]: c for c in report["chargers"]}
    assert chargers["bay_01"]["billed_kwh"] == chargers["bay_01"]["metered_kwh"] == "11.000"
    assert chargers["bay_01"]["flagged"] is False
    assert (chargers["bay_02"]["billed_kwh"], chargers["bay_02"]["metered_kwh"]) == (
        "10.000",
        "15.000",
    )
    assert chargers["bay_02"]["difference_kwh"] == "5.000" and chargers["bay_02"]["flagged"]
    assert report["flagged_chargers"] == ["bay_02"]
    # The site meter saw 27 kWh, the chargers' meters 26: 3.7 %, within the 5 % allowed.
    assert report["site"]["site_kwh"] == "27.000" and report["site"]["chargers_kwh"] == "26.000"
    assert report["site"]["flagged"] is False
    assert report["cdrs_checked"] == 2 and report["cdrs_not_reproducible"] == []
