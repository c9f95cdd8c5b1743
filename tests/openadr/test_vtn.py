"""Against openleadr's real VTN on loopback: the hub registers as a VEN, receives events, opts in or
out, and the smart-charging engine keeps the site under each event's cap from its start, on the
hub's simulated clock; the VTN hears our opt answers and the site's measured load."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.bootstrap import create_hub
from hub.bus import Event
from hub.charging.signals import SignalStore
from hub.clock import RealClock, SimClock
from hub.core import CoreState, Hub
from tests.openadr.support import SITE, LabCharger, Vtn, free_port, start_vtn, until

# Every scenario here finishes in a few real seconds: openleadr polls every 0.5 s of wall time,
# the hub's own time (caps, phases, charging) is simulated and moved by the test.
pytestmark = pytest.mark.timeout(60)


@dataclass
class Depot:
    hub: Hub
    clock: SimClock
    vtn: Vtn
    chargers: list[LabCharger]
    phases: list[Event]

    def load_kw(self) -> float:
        return sum(c.data.power_w or 0.0 for c in self.chargers) / 1000

    def dr(self) -> Any:
        return self.hub.data["openadr"].dr

    async def step(self, seconds: int = 1) -> None:
        for _ in range(seconds):
            await self.clock.advance(1)
        await self.hub.block_till_done()


@pytest.fixture
async def depot(tmp_path: Path) -> AsyncIterator[Depot]:
    vtn = await start_vtn()
    config = {
        "site": SITE,
        "smart_charging": {"interval": 5, "plan": False},
        "openadr": {
            "vtn": {"url": vtn.url, "ven_name": "evhub-test", "retry": 30,
                    "telemetry": {"min_interval": 1, "max_interval": 60}},
            "levels": {1: "70%", 2: "40%", 3: "0%"},
            "lead": 10,
        },
    }  # fmt: skip
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    # openleadr judges events by the wall clock (e.g. it answers no event it thinks is over):
    # the simulated hub clock starts at the real time, and only the test moves it on.
    clock = SimClock(start=RealClock().now().replace(microsecond=0))
    hub = create_hub(tmp_path, clock=clock)
    phases: list[Event] = []
    hub.bus.listen("demand_response", phases.append)
    await hub.start()
    chargers = [LabCharger(f"bay_{n}") for n in (1, 2, 3)]
    await hub.entities.add("lab", chargers)
    await until(lambda: hub.data["openadr"].ven.registered, what="registration")
    for n, charger in enumerate(chargers):
        charger.plug(f"s{n}")
    d = Depot(hub, clock, vtn, chargers, phases)
    await d.step(6)
    try:
        yield d
    finally:
        await hub.stop()
        await vtn.stop()


def simple_event(d: Depot, level: int, in_s: int, minutes: int = 10, **kwargs: Any) -> str:
    start = d.clock.now() + timedelta(seconds=in_s)
    return d.vtn.add_event(
        signal_name="SIMPLE", signal_type="level",
        intervals=[{"dtstart": start, "duration": timedelta(minutes=minutes),
                    "signal_payload": level}], **kwargs,
    )  # fmt: skip


async def test_an_event_caps_the_site_from_its_start_and_the_vtn_hears_everything(
    depot: Depot,
) -> None:
    d = depot
    assert d.vtn.registrations == ["evhub-test"]
    assert d.load_kw() == pytest.approx(60.0, abs=0.5)  # three cars share the 60 kW site
    event_id = simple_event(d, level=2, in_s=120)  # level 2: 40 % of 60 kW
    await until(lambda: event_id in d.dr().events, what="the event")
    await until(lambda: (event_id, "optIn") in d.vtn.opts, what="the VTN hearing our optIn")
    received = [e.data for e in d.phases if e.data["phase"] == "received"]
    assert received[0]["cap_kw"] == pytest.approx(24.0)
    assert received[0]["level"] == 2 and received[0]["opt"] == "in"
    start = d.dr().events[event_id].start
    assert d.hub.states.get("sensor.demand_response_next_event").state == start.isoformat()
    series = SignalStore.of(d.hub).get("caps.site")
    assert series is not None and series.value_at(start) == pytest.approx(24.0)
    assert d.load_kw() > 24.0  # not yet

    worst_after_start = 0.0
    while d.clock.now() < start + timedelta(minutes=3):
        await d.step()
        if d.clock.now() >= start:
            worst_after_start = max(worst_after_start, d.load_kw())
    assert worst_after_start <= 24.0 + 1e-6
    fired = next(e for e in d.phases if e.data["phase"] == "start")
    assert fired.time_fired == start  # to the second, on the hub clock
    assert d.hub.states.get("binary_sensor.demand_response_active").state is True
    assert d.hub.states.get("sensor.demand_response_level").state == 2
    assert d.hub.states.get("sensor.demand_response_cap").state == pytest.approx(24.0)

    # The VTN hears the site's load as TELEMETRY_USAGE in kW, stamped with hub time.
    await until(lambda: any(v == pytest.approx(d.load_kw(), abs=0.01) for _, v in d.vtn.reports),
                what="a telemetry report with the capped load")  # fmt: skip

    await d.clock.advance_to(start + timedelta(minutes=10))
    await d.step(10)
    assert [e.data["phase"] for e in d.phases] == ["received", "start", "end"]
    assert d.hub.states.get("binary_sensor.demand_response_active").state is False
    assert d.load_kw() == pytest.approx(60.0, abs=0.5)  # released
    report = await d.hub.services.call("openadr", "report", {})
    (row,) = report["events"]
    assert row["event_id"] == event_id and row["status"] == "completed" and row["opt"] == "in"
    assert row["seconds_over"] == 0 and row["max_kw"] <= 24.0 + 1e-6
    assert row["measured_seconds"] == pytest.approx(600, abs=1)
    assert [h["kind"] for h in row["history"]] == ["received", "start", "end"]


async def test_an_automation_opts_out_before_the_start_and_the_vtn_is_told(depot: Depot) -> None:
    d = depot
    event_id = simple_event(d, level=3, in_s=60)
    await until(lambda: (event_id, "optIn") in d.vtn.opts, what="the first answer")
    await d.hub.services.call("openadr", "opt_out", {"event_id": event_id})
    await until(lambda: (event_id, "optOut", 0) in d.vtn.created, what="the VTN hearing optOut")
    assert not SignalStore.of(d.hub).get("caps.site").slots  # released at once
    await d.step(120)
    assert d.load_kw() == pytest.approx(60.0, abs=0.5)  # no cap: we declined
    start = next(e.data for e in d.phases if e.data["phase"] == "start")
    assert start["opt"] == "out"
    assert d.hub.states.get("binary_sensor.demand_response_active").state is False
    # A new event makes the VTN deliver the whole list again: the old one is answered with our
    # new decision, not with the one openleadr remembered.
    other = simple_event(d, level=1, in_s=3600)
    await until(lambda: (other, "optIn") in d.vtn.opts, what="the second event's answer")
    answers = [opt for eid, opt, _ in d.vtn.created if eid == event_id]
    assert answers[0] == "optIn" and answers[-1] == "optOut" and len(answers) >= 3


async def test_a_cancelled_event_releases_the_cap(depot: Depot) -> None:
    d = depot
    event_id = simple_event(d, level=3, in_s=30)
    await until(lambda: event_id in d.dr().events, what="the event")
    await d.step(40)
    assert d.load_kw() == 0.0  # level 3: 0 %
    d.vtn.server.cancel_event(d.vtn.ven_id, event_id)
    await until(lambda: d.dr().events[event_id].status == "cancelled", what="the cancellation")
    assert [e.data["phase"] for e in d.phases] == ["received", "start", "cancelled"]
    assert not SignalStore.of(d.hub).get("caps.site").slots
    await d.step(10)
    assert d.load_kw() == pytest.approx(60.0, abs=0.5)


async def test_a_modified_event_moves_the_cap(depot: Depot) -> None:
    d = depot
    event_id = simple_event(d, level=1, in_s=60)
    await until(lambda: event_id in d.dr().events, what="the event")
    stored = d.vtn.stored(event_id)
    stored.event_signals[0].intervals[0]["signal_payload"] = 2
    stored.event_descriptor.modification_number += 1
    d.vtn.server.events_updated[d.vtn.ven_id] = True
    await until(lambda: d.dr().events[event_id].modification == 1, what="the modification")
    assert [e.data["cap_kw"] for e in d.phases] == [pytest.approx(42.0), pytest.approx(24.0)]
    await until(lambda: (event_id, "optIn", 1) in d.vtn.created, what="the answer to it")
    await d.step(70)
    assert d.load_kw() <= 24.0 + 1e-6


async def test_a_vtn_that_goes_away_leaves_known_events_in_force(depot: Depot) -> None:
    d = depot
    event_id = simple_event(d, level=2, in_s=60, minutes=5)
    await until(lambda: event_id in d.dr().events, what="the event")
    await d.vtn.stop()
    await d.step(90)
    assert d.load_kw() <= 24.0 + 1e-6  # still obeyed
    await d.clock.advance_to(d.dr().events[event_id].end)
    await d.step(10)
    assert d.dr().events[event_id].status == "completed"
    assert d.load_kw() == pytest.approx(60.0, abs=0.5)
    assert d.hub.state is CoreState.RUNNING


async def test_an_event_we_cannot_follow_is_declined_and_logged(
    depot: Depot, caplog: pytest.LogCaptureFixture
) -> None:
    d = depot
    start = d.clock.now() + timedelta(seconds=60)
    event_id = d.vtn.add_event(
        signal_name="x-vendorSignal", signal_type="level",
        intervals=[{"dtstart": start, "duration": timedelta(minutes=5), "signal_payload": 1}],
    )  # fmt: skip
    await until(lambda: (event_id, "optOut") in d.vtn.opts, what="our optOut")
    assert event_id not in d.dr().events
    assert "cannot follow event" in caplog.text and "x-vendorSignal" in caplog.text
    await d.step(70)
    assert d.load_kw() == pytest.approx(60.0, abs=0.5)
    assert d.hub.state is CoreState.RUNNING


async def test_a_vtn_that_is_not_there_yet_is_retried_on_the_hub_clock(tmp_path: Path) -> None:
    port = free_port()
    config = {
        "site": SITE,
        "openadr": {
            "vtn": {
                "url": f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b",
                "ven_name": "late",
                "retry": 30,
            }
        },
    }
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    clock = SimClock(start=RealClock().now().replace(microsecond=0))
    hub = create_hub(tmp_path, clock=clock)
    failed: list[Event] = []
    hub.bus.listen("openadr_registration_failed", failed.append)
    await hub.start()
    vtn = None
    try:
        await until(lambda: failed, what="the first attempt failing")
        assert hub.state is CoreState.RUNNING
        vtn = await start_vtn(port=port)
        await clock.advance(29)
        assert vtn.registrations == []  # the retry waits for hub time, not wall time
        await clock.advance(1)
        await until(lambda: hub.data["openadr"].ven.registered, what="the retry registering")
        assert vtn.registrations == ["late"] and len(failed) == 1
    finally:
        await hub.stop()
        if vtn is not None:
            await vtn.stop()
