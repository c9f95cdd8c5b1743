"""Answers of the price feeds we have no recording of, built from each provider's published API
documentation (no real answer was captured for these; the recorded ones live in
../shared/data/tariffs/dayahead/):

- ENTSO-E Transparency Platform RESTful API guide, document type A44 (day-ahead prices): a
  Publication_MarketDocument (namespace ...:publicationdocument:7:3) with TimeSeries / Period
  (timeInterval, resolution PT60M or PT15M) / Point (position, price.amount in EUR/MWh); curve
  type A03 leaves out a point whose price repeats the one before. "No data" is an
  Acknowledgement_MarketDocument with a Reason (code 999, text).
- aWATTar API (api.awattar.at|de /v1/marketdata): {"object": "list", "data": [{start_timestamp,
  end_timestamp (epoch ms), marketprice, unit: "Eur/MWh"}], "url": ...}.
- Octopus Energy REST API (/v1/products/{product}/electricity-tariffs/{tariff}/
  standard-unit-rates/): {"count", "next", "previous", "results": [{value_exc_vat,
  value_inc_vat (p/kWh), valid_from, valid_to, payment_method}]}, newest first, half hours.
- Tibber GraphQL API (api.tibber.com/v1-beta/gql): data.viewer.homes[].currentSubscription
  .priceInfo.today/tomorrow [{total, energy, tax, startsAt (local time with offset), currency}];
  errors come as {"errors": [{"message": ...}]}.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tariffs"
NORDPOOL_FILE = DATA / "dayahead" / "nordpool_dayahead_2024-11-05.json"
ENERGYZERO_FILE = DATA / "dayahead" / "energyzero_2022-12-07.json"
ACNPORTAL_DIR = DATA / "acnportal"

ENTSOE_NS = "urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3"
ACK_NS = "urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:7:0"


def _participants(role: str, receiver: str) -> str:
    """Sender (the platform, role A32) and receiver elements every ENTSO-E document carries."""
    sender, own = "sender_MarketParticipant", "receiver_MarketParticipant"
    return (
        f'<{sender}.mRID codingScheme="A01">10X1001A1001A450</{sender}.mRID>'
        f"<{sender}.marketRole.type>A32</{sender}.marketRole.type>"
        f'<{own}.mRID codingScheme="A01">{receiver}</{own}.mRID>'
        f"<{own}.marketRole.type>{role}</{own}.marketRole.type>"
    )


def _zulu(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def entsoe_period(
    start: datetime, prices: Sequence[float], resolution: str = "PT60M", curve: str = "A03"
) -> str:
    """One TimeSeries of a A44 document; A03 drops repeated prices as the platform does."""
    step = timedelta(minutes=15 if resolution == "PT15M" else 60)
    points = []
    for i, price in enumerate(prices):
        if curve == "A03" and i and prices[i - 1] == price:
            continue
        points.append(
            f"<Point><position>{i + 1}</position><price.amount>{price}</price.amount></Point>"
        )
    end = start + step * len(prices)
    return f"""
  <TimeSeries>
    <mRID>1</mRID>
    <auction.type>A01</auction.type>
    <businessType>A62</businessType>
    <in_Domain.mRID codingScheme="A01">10Y1001A1001A82H</in_Domain.mRID>
    <out_Domain.mRID codingScheme="A01">10Y1001A1001A82H</out_Domain.mRID>
    <contract_MarketAgreement.type>A01</contract_MarketAgreement.type>
    <currency_Unit.name>EUR</currency_Unit.name>
    <price_Measure_Unit.name>MWH</price_Measure_Unit.name>
    <classificationSequence_AttributeInstanceComponent.position>1</classificationSequence_AttributeInstanceComponent.position>
    <curveType>{curve}</curveType>
    <Period>
      <timeInterval><start>{_zulu(start)}</start><end>{_zulu(end)}</end></timeInterval>
      <resolution>{resolution}</resolution>
      {"".join(points)}
    </Period>
  </TimeSeries>"""


def entsoe_a44(*series: str, start: datetime, end: datetime) -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Publication_MarketDocument xmlns="{ENTSOE_NS}">
  <mRID>6f2e4c1b9a7d4e0f8c3b2a1d5e6f7a8b</mRID>
  <revisionNumber>1</revisionNumber>
  <type>A44</type>
  {_participants("A33", "10X1001A1001A450")}
  <createdDateTime>2026-03-01T12:30:44Z</createdDateTime>
  <period.timeInterval><start>{_zulu(start)}</start><end>{_zulu(end)}</end></period.timeInterval>
  {"".join(series)}
</Publication_MarketDocument>""".encode()


def entsoe_no_data(text: str = "No matching data found for Data item Day-ahead Prices") -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Acknowledgement_MarketDocument xmlns="{ACK_NS}">
  <mRID>0d1f6f7e-4a5b-4c3d-9e8f-7a6b5c4d3e2f</mRID>
  <createdDateTime>2026-03-02T06:00:00Z</createdDateTime>
  {_participants("A39", "10X1001A1001A39I")}
  <received_MarketDocument.createdDateTime>2026-03-02T06:00:00Z
  </received_MarketDocument.createdDateTime>
  <Reason><code>999</code><text>{text}</text></Reason>
</Acknowledgement_MarketDocument>""".encode()


def awattar(start: datetime, prices: Sequence[float], country: str = "at") -> bytes:
    hour = 3_600_000
    t0 = int(start.timestamp() * 1000)
    data = [
        {
            "start_timestamp": t0 + i * hour,
            "end_timestamp": t0 + (i + 1) * hour,
            "marketprice": price,
            "unit": "Eur/MWh",
        }
        for i, price in enumerate(prices)
    ]
    return json.dumps({"object": "list", "data": data, "url": f"/{country}/v1/marketdata"}).encode()


def octopus(start: datetime, prices_inc_vat: Sequence[float]) -> bytes:
    half = timedelta(minutes=30)
    results = [
        {
            "value_exc_vat": round(price / 1.05, 4),  # domestic electricity VAT in the UK: 5 %
            "value_inc_vat": price,
            "valid_from": (start + i * half).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "valid_to": (start + (i + 1) * half).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "payment_method": None,
        }
        for i, price in enumerate(prices_inc_vat)
    ]
    results.reverse()  # the API lists the newest slot first
    return json.dumps(
        {"count": len(results), "next": None, "previous": None, "results": results}
    ).encode()


def tibber_entries(
    start: datetime, totals: Sequence[float], tz: tzinfo, step: timedelta = timedelta(hours=1)
) -> list[dict[str, object]]:
    return [
        {
            "total": total,
            "energy": round(total * 0.6, 4),
            "tax": round(total * 0.4, 4),
            "startsAt": (start + i * step).astimezone(tz).isoformat(timespec="milliseconds"),
            "currency": "EUR",
        }
        for i, total in enumerate(totals)
    ]


def tibber(
    today: list[dict[str, object]], tomorrow: list[dict[str, object]] | None = None
) -> bytes:
    home = {
        "id": "96a14971-525a-4420-aae9-e5aedaa129ff",
        "currentSubscription": {"priceInfo": {"today": today, "tomorrow": tomorrow or []}},
    }
    return json.dumps({"data": {"viewer": {"homes": [home]}}}).encode()


def shifted_nordpool(days: int) -> bytes:
    """The recorded Nord Pool answer moved by whole days (for a 'tomorrow' the test publishes
    later); only the dates change, prices stay the recorded ones."""
    doc = json.loads(NORDPOOL_FILE.read_text())
    delta = timedelta(days=days)

    def move(text: str) -> str:
        moved = datetime.fromisoformat(text) + delta
        return moved.strftime("%Y-%m-%dT%H:%M:%SZ")

    for entry in doc["multiAreaEntries"]:
        entry["deliveryStart"] = move(entry["deliveryStart"])
        entry["deliveryEnd"] = move(entry["deliveryEnd"])
    day = datetime.fromisoformat(doc["deliveryDateCET"]) + delta
    doc["deliveryDateCET"] = day.date().isoformat()
    return json.dumps(doc).encode()
