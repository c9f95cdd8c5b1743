"""Clone detection with real OCPP 1.6 chargers: one card charging on two stations at once.

A card shown at a second station while it charges at the first is refused (ConcurrentTx) and
flagged; a second session that starts anyway (a charger that decided from its cache) is strong
evidence: flagged, audited, and with `auto_block_clones` the card is blocked everywhere.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ocpp.v16 import call as call16
from sqlalchemy import select

from hub.charging import pseudonym_key, pseudonymize
from hub.clock import SimClock
from hub.core import Hub
from plugins.accounts import store
from tests.accounts.support import SEED, events
from tests.ocpp.support import PASSWORD, charger, running_hub

T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
OCPP = {"chargers": [{"id": name, "password": PASSWORD} for name in ("bay_a", "bay_b")]}
CARD, POOL = "04A1B2C3", "POOL0001"
TIMEOUT = 10.0


def at(clock: SimClock, minutes: float = 0) -> str:
    return (clock.now() + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def boot(cp: Any) -> None:
    await cp.call(call16.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))


async def audit_rows(hub: Hub) -> list[dict[str, Any]]:
    assert hub.recorder is not None
    query = select(store.audit).where(store.audit.c.kind == "clone_suspected")
    return await hub.recorder.read(lambda c: [dict(r) for r in c.execute(query).mappings()])


async def test_a_cloned_card_is_flagged_and_blocked(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    config = {"accounts": {**SEED, "auto_block_clones": True}}
    async with (
        running_hub(tmp_path, OCPP, clock, **config) as hub,
        charger(hub, "bay_a") as a,
        charger(hub, "bay_b") as b,
    ):
        flags = events(hub, "accounts_token_clone_suspected")
        await boot(a)
        await boot(b)
        first = await a.call(call16.StartTransaction(1, CARD, 0, at(clock)))
        assert first.id_tag_info["status"] == "Accepted"

        # The same card at another station, minutes later: refused, and flagged as weak evidence.
        shown = await b.call(call16.Authorize(CARD))
        assert shown.id_tag_info["status"] == "ConcurrentTx"
        await asyncio.wait_for(hub.block_till_done(), TIMEOUT)
        (weak,) = flags
        assert weak.data["evidence"] == "presented_elsewhere" and not weak.data["auto_blocked"]

        # That station starts anyway (it trusted its cache): two sessions at once.
        second = await b.call(call16.StartTransaction(1, CARD, 0, at(clock, 1)))
        assert second.id_tag_info["status"] == "ConcurrentTx"
        await asyncio.wait_for(hub.block_till_done(), TIMEOUT)
        strong = [f for f in flags if f.data["evidence"] == "overlapping_sessions"]
        assert len(strong) == 1 and strong[0].data["auto_blocked"] is True
        pseudonym = pseudonymize(CARD, pseudonym_key(hub))
        assert strong[0].data["token"] == pseudonym and strong[0].data["account_id"] == "van17"
        assert strong[0].data["chargers"] == ["charger.bay_a_1", "charger.bay_b_1"]
        assert CARD not in str([f.data for f in flags])  # events carry the pseudonym only

        # Blocked everywhere, on the first station too.
        again = await a.call(call16.Authorize(CARD))
        assert again.id_tag_info["status"] == "Blocked"
        token = await hub.services.call("accounts", "lookup_token", {"id_token": CARD})
        assert token["status"] == "Blocked"
        rows = await audit_rows(hub)
        assert [r["detail"]["evidence"] for r in rows] == [
            "presented_elsewhere", "overlapping_sessions"
        ]  # fmt: skip
        assert {r["token"] for r in rows} == {pseudonym}

        # The security events are in the recorder's history.
        assert hub.recorder is not None
        await hub.recorder.flush()
        recorded = await hub.recorder.events("accounts_token_clone_suspected", T0)
        assert len(recorded) == 2


async def test_a_shared_card_and_a_late_offline_report_are_no_clones(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, accounts=SEED) as hub,
        charger(hub, "bay_a") as a,
        charger(hub, "bay_b") as b,
    ):
        flags = events(hub, "accounts_token_clone_suspected")
        await boot(a)
        await boot(b)
        # A pool card (max_concurrent 3) is meant for several cars at once.
        for cp in (a, b):
            started = await cp.call(call16.StartTransaction(1, POOL, 0, at(clock)))
            assert started.id_tag_info["status"] == "Accepted"
        # Station B was offline: it reports a session of the card from before station A's.
        await a.call(call16.StartTransaction(2, CARD, 0, at(clock)))
        late = await b.call(call16.StartTransaction(2, CARD, 0, at(clock, -120)))
        await b.call(call16.StopTransaction(500, at(clock, -90), late.transaction_id))
        await asyncio.wait_for(hub.block_till_done(), TIMEOUT)
        assert [f.data["evidence"] for f in flags] == ["presented_elsewhere"]  # weak only
        assert (await a.call(call16.Authorize(CARD))).id_tag_info["status"] == "Accepted"
