"""The contract with the automation engine: an automation triggered by `demand_response` decides
the opt before the event starts, through `openadr.opt_out`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml

from hub.bootstrap import create_hub
from hub.charging.signals import SignalStore, Slot
from hub.clock import SimClock
from plugins.openadr.model import DrEvent, Opt
from tests.conftest import SIM_START
from tests.openadr.support import SITE

AUTOMATIONS = [
    {
        "id": "decline_level_3",
        "alias": "Decline level-3 demand response",
        "triggers": [{"trigger": "demand_response", "event": "received"}],
        "conditions": [{"condition": "template", "value_template": "{{ trigger.level == 3 }}"}],
        "actions": [{"action": "openadr.opt_out", "data": {"event_id": "{{ trigger.event_id }}"}}],
    }
]


def level(event_id: str, value: int) -> DrEvent:
    start = SIM_START + timedelta(minutes=10)
    end = start + timedelta(minutes=30)
    return DrEvent(event_id, "test", "site", "SIMPLE", "level", start, end,
                   (Slot(start, end, 0.0 if value == 3 else 30.0),), level=value)  # fmt: skip


async def test_an_automation_declines_level_3_before_it_starts(tmp_path: Path) -> None:
    config = {"site": SITE, "openadr": {}, "automation": AUTOMATIONS}
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    clock = SimClock(start=SIM_START)
    hub = create_hub(tmp_path, clock=clock)
    await hub.start()
    try:
        dr = hub.data["openadr"].dr
        dr.upsert(level("severe", 3))
        dr.upsert(level("mild", 1))
        await hub.block_till_done()
        assert dr.events["severe"].opt is Opt.OUT and dr.events["severe"].opt_by == "service"
        assert dr.events["mild"].opt is Opt.IN
        await clock.advance(11 * 60)
        assert SignalStore.of(hub).get("caps.site").value_at(hub.now()) == 30.0
    finally:
        await hub.stop()
