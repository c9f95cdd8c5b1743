"""A charger that was offline when a session started replays it later: billed once, correctly.

End to end: a real OCPP 1.6J charge point (the `ocpp` library over a loopback websocket) talks to
the hub's OCPP plugin; billing only listens to what the OCPP plugin records and announces.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from ocpp.v16 import call

from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import PluginHost
from plugins import allowlist, ocpp
from plugins import billing as billing_plugin
from plugins.billing import store
from tests.billing.support import FakeAccounts, record_session, write_config
from tests.ocpp.support import PASSWORD, charger

D = Decimal
BILLING: dict[str, Any] = {
    "plans": {
        "standard": {
            "tax_rate": 19,
            "session_fee": 0.50,
            "energy": {
                "price": 0.30,
                "periods": [{"name": "peak", "start": "17:00", "end": "21:00", "price": 0.45}],
            },
        }
    },
    "assign": {"default": "standard"},
}
ACCOUNTS = {"04A1B2C3": {"account_id": "anna"}}


@contextlib.asynccontextmanager
async def ocpp_hub(config_dir: Path, clock: SimClock) -> AsyncIterator[Hub]:
    write_config(
        config_dir,
        BILLING,
        ocpp={
            "host": "127.0.0.1",
            "port": 0,
            "ping_interval": 0,
            "chargers": [{"id": "bay_01", "password": PASSWORD}],
        },
        allowlist={"tokens": [{"id": "04A1B2C3", "name": "van 17"}]},
    )
    host = PluginHost()
    for name, plugin in (
        ("ocpp", ocpp),
        ("allowlist", allowlist),
        ("billing", billing_plugin),
        ("accounts", FakeAccounts(ACCOUNTS)),
    ):
        host.register(name, plugin)
    hub = create_hub(config_dir, clock=clock, host=host)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


def ts(clock: SimClock, minutes: float) -> str:
    return (clock.now() + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def test_an_offline_start_replayed_later_is_billed_once_and_correctly(
    tmp_path: Path,
) -> None:
    # Now: 20:00 in Berlin. The charger lost its uplink at 16:00 and comes back now.
    clock = SimClock(start=datetime(2026, 3, 2, 19, 0, tzinfo=UTC))
    async with ocpp_hub(tmp_path, clock) as hub, charger(hub, "bay_01") as cp:
        await cp.call(call.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))
        # Queued while offline: a start at 16:30 local with meterStart 0 (the charger could not
        # read its meter yet), the register at 16:40, 17:00 and 17:30, the stop at 18:00.
        start = await cp.call(call.StartTransaction(1, "04A1B2C3", 0, ts(clock, -210)))
        tx = start.transaction_id
        for minutes, register in ((-200, 1_250_000), (-180, 1_252_000), (-150, 1_256_000)):
            await cp.call(
                call.MeterValues(
                    1,
                    [
                        {
                            "timestamp": ts(clock, minutes),
                            "sampledValue": [
                                {
                                    "value": str(register),
                                    "measurand": "Energy.Active.Import.Register",
                                }
                            ],
                        }
                    ],
                    transaction_id=tx,
                )
            )
        stop = call.StopTransaction(1_259_000, ts(clock, -120), tx)
        await cp.call(stop)
        await cp.call(stop)  # the answer was lost: the charger sends the stop again
        await hub.block_till_done()

        cdrs = await hub.recorder.read(lambda conn: store.list_cdrs(conn))
        assert len(cdrs) == 1
        [cdr] = cdrs
        # The session keeps its own times, not the time of the replay.
        assert cdr.started_at == datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
        assert cdr.stopped_at == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
        # meterStart 0 with a register at 1.25 MWh ten minutes later is an offline start: the
        # energy counts from the first reading, never from 0 (which would bill 1,259 kWh).
        # 16:40-17:00 local: 2,000 Wh standard = 2 kWh x 0.30 = 0.60
        # 17:00-18:00 local: 4,000 + 3,000 Wh peak = 7 kWh x 0.45 = 3.15
        # session fee 0.50 -> net 4.25; VAT 19 % = 0.8075 -> 0.81; gross 5.06
        assert cdr.energy_wh == D("9000.000")
        assert (cdr.net, cdr.tax, cdr.gross) == (D("4.25"), D("0.81"), D("5.06"))
        assert any("offline start" in w for w in cdr.doc["energy"]["warnings"])
        assert cdr.bill_to == "anna"

        # The month's invoice has it once.
        [invoice] = await hub.services.call("billing", "issue_invoices", {"period": "2026-03"})
        assert invoice["net"] == "4.25" and invoice["gross"] == "5.06"


async def test_a_session_replayed_after_its_month_was_invoiced_goes_on_the_next_invoice(
    tmp_path: Path,
) -> None:
    """2.0.1 style: the charger's meter counts from 0 in each transaction (session-relative)."""
    clock = SimClock(start=datetime(2026, 4, 3, 8, 0, tzinfo=UTC))
    write_config(tmp_path, BILLING)
    host = PluginHost()
    host.register("billing", billing_plugin)
    host.register("accounts", FakeAccounts(ACCOUNTS))
    hub = create_hub(tmp_path, clock=clock, host=host)
    await hub.start()
    try:
        march_31 = datetime(2026, 3, 31, 8, 0, tzinfo=UTC)  # 10:00 local
        await record_session(hub, march_31 - timedelta(days=1), [(0, 0), (60, 10_000)])
        [march] = await hub.services.call("billing", "issue_invoices", {"period": "2026-03"})
        # 10 kWh x 0.30 = 3.00 + 0.50 fee = 3.50; VAT 0.665 -> 0.67
        assert (march["net"], march["tax"]) == ("3.50", "0.67")
        # A charger offline since 31 March replays a session of that day, now in April.
        await record_session(hub, march_31, [(0, 0), (120, 20_000)])
        again = await hub.services.call("billing", "issue_invoices", {"period": "2026-03"})
        assert again == []  # March was invoiced: never a second March invoice
        [april] = await hub.services.call("billing", "issue_invoices", {"period": "2026-04"})
        # 20 kWh x 0.30 = 6.00 + 0.50 = 6.50 on April's invoice, once
        assert april["net"] == "6.50"
        assert await hub.services.call("billing", "issue_invoices", {"period": "2026-04"}) == []
    finally:
        await hub.stop()
