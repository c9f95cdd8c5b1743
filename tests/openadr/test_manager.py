"""The demand-response core on a hub's simulated clock: phases to the second, the min of
overlapping caps, opt decisions, cancellation, compliance, the record and the report, restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.bootstrap import create_hub
from hub.bus import Event
from hub.charging.signals import SignalStore, Slot
from hub.clock import SimClock
from hub.core import CoreState, Hub
from hub.plugins import PluginStatus
from hub.services import ServiceValidationError
from hub.storage.migrations import upgrade, upgrade_branch
from hub.storage.schema import create_recorder_engine
from plugins.openadr import store
from plugins.openadr.model import DrEvent, Opt
from tests.conftest import SIM_START
from tests.openadr.support import SITE

MIN = timedelta(minutes=1)
CONTRACT = {"event_id", "phase", "node", "cap_kw", "level", "start", "end", "signal_name", "opt"}

HubMaker = Callable[..., Any]


@pytest.fixture
async def make_hub(tmp_path: Path) -> AsyncIterator[HubMaker]:
    hubs: list[Hub] = []

    async def make(db_url: str | None = None, **openadr: Any) -> tuple[Hub, SimClock, list[Event]]:
        config: dict[str, Any] = {
            "site": SITE,
            "openadr": {"load_entity": "sensor.site_power", "lead": 10, **openadr},
        }
        if db_url:
            config["recorder"] = {"db_url": db_url}
        (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
        clock = SimClock(start=SIM_START)
        hub = create_hub(tmp_path, clock=clock)
        phases: list[Event] = []
        hub.bus.listen("demand_response", phases.append)
        await hub.start()
        hub.states.set("sensor.site_power", 50.0, unit="kW")
        hubs.append(hub)
        return hub, clock, phases

    yield make
    for hub in hubs:
        await hub.stop()


def event(event_id: str, in_min: float, minutes: float, kw: float, **kw_args: Any) -> DrEvent:
    start = SIM_START + in_min * MIN
    end = start + minutes * MIN
    return DrEvent(event_id, "test", "site", "SIMPLE", "level", start, end,
                   (Slot(start, end, kw),), **kw_args)  # fmt: skip


def dr(hub: Hub) -> Any:
    return hub.data["openadr"].dr


def cap_now(hub: Hub) -> float | None:
    series = SignalStore.of(hub).get("caps.site")
    return None if series is None else series.value_at(hub.now())


async def test_phases_fire_on_the_hub_clock_to_the_second(make_hub: HubMaker) -> None:
    hub, clock, phases = await make_hub()
    dr(hub).upsert(event("a", 5, 10, 20.0, level=2))
    await clock.advance(3600)
    assert [(e.data["phase"], e.time_fired) for e in phases] == [
        ("received", SIM_START),
        ("start", SIM_START + 5 * MIN),
        ("end", SIM_START + 15 * MIN),
    ]
    assert set(phases[0].data) == CONTRACT
    assert phases[1].data["start"] == (SIM_START + 5 * MIN).isoformat()
    assert phases[1].data["cap_kw"] == 20.0 and phases[1].data["opt"] == "in"


async def test_overlapping_events_the_stricter_cap_wins_and_entities_follow(
    make_hub: HubMaker,
) -> None:
    hub, clock, _ = await make_hub()
    dr(hub).upsert(event("a", 5, 30, 40.0, level=1))
    dr(hub).upsert(event("b", 10, 10, 25.0, level=2))
    assert (
        hub.states.get("sensor.demand_response_next_event").state
        == (SIM_START + 5 * MIN).isoformat()
    )
    await clock.advance_to(SIM_START + 5 * MIN - timedelta(seconds=1))
    assert cap_now(hub) is None and hub.states.get("sensor.demand_response_cap").state is None
    await clock.advance(1)
    assert cap_now(hub) == 40.0
    assert hub.states.get("sensor.demand_response_cap").state == 40.0
    await clock.advance_to(SIM_START + 12 * MIN)
    assert cap_now(hub) == 25.0
    assert hub.states.get("sensor.demand_response_cap").state == 25.0
    assert hub.states.get("sensor.demand_response_level").state == 2
    assert hub.states.get("binary_sensor.demand_response_active").attributes["events"] == [
        "a", "b"
    ]  # fmt: skip
    await clock.advance_to(SIM_START + 21 * MIN)
    assert cap_now(hub) == 40.0 and hub.states.get("sensor.demand_response_level").state == 1
    await clock.advance_to(SIM_START + 40 * MIN)
    assert cap_now(hub) is None and not SignalStore.of(hub).get("caps.site").slots
    assert hub.states.get("sensor.demand_response_level").state == 0
    assert hub.states.get("sensor.demand_response_cap").state is None


async def test_opt_out_by_service_publishes_no_cap_and_opt_in_restores_it(
    make_hub: HubMaker,
) -> None:
    hub, clock, phases = await make_hub(opt="out")
    dr(hub).upsert(event("a", 5, 10, 20.0, opt=Opt.OUT))  # as a source set up with opt: out
    assert not SignalStore.of(hub).get("caps.site") or cap_now(hub) is None
    await hub.services.call("openadr", "opt_in", {"event_id": "a"})
    await clock.advance(6 * 60)
    assert cap_now(hub) == 20.0
    await hub.services.call("openadr", "opt_out", {"event_id": "a"})
    assert cap_now(hub) is None
    assert hub.states.get("binary_sensor.demand_response_active").attributes["opted_out"] == ["a"]
    with pytest.raises(LookupError):
        await hub.services.call("openadr", "opt_in", {"event_id": "nope"})
    with pytest.raises(ServiceValidationError):
        await hub.services.call("openadr", "opt_in", {})
    await clock.advance(3600)
    with pytest.raises(ValueError, match="too late"):
        await hub.services.call("openadr", "opt_in", {"event_id": "a"})
    assert [(e.data["phase"], e.data["opt"]) for e in phases] == [
        ("received", "out"), ("start", "in"), ("end", "out")
    ]  # fmt: skip


async def test_a_decision_outlives_a_modification(make_hub: HubMaker) -> None:
    hub, _clock, phases = await make_hub()
    dr(hub).upsert(event("a", 5, 10, 20.0))
    await hub.services.call("openadr", "opt_out", {"event_id": "a"})
    answer = dr(hub).upsert(event("a", 5, 20, 10.0, modification=1))
    assert answer is Opt.OUT and cap_now(hub) is None
    assert [e.data["phase"] for e in phases] == ["received", "received"]
    assert dr(hub).upsert(event("a", 5, 20, 10.0, modification=1)) is Opt.OUT  # re-delivery
    assert len(phases) == 2


async def test_cancel_releases_the_cap_and_records_compliance_so_far(make_hub: HubMaker) -> None:
    hub, clock, phases = await make_hub()
    dr(hub).upsert(event("a", 0, 60, 30.0))
    assert phases[-1].data["phase"] == "start"  # it was already running when it arrived
    await clock.advance(60)
    hub.states.set("sensor.site_power", 20.0, unit="kW")
    await clock.advance(120)
    assert dr(hub).cancel("a", "test")
    assert cap_now(hub) is None and phases[-1].data["phase"] == "cancelled"
    (row,) = (await hub.services.call("openadr", "report", {}))["events"]
    assert row["status"] == "cancelled"
    assert row["max_kw"] == 50.0 and row["seconds_over"] == 60.0
    assert row["avg_kw"] == pytest.approx((50 * 60 + 20 * 120) / 180)
    assert [h["kind"] for h in row["history"]] == ["received", "cancelled"]


async def test_compliance_counts_seconds_over_the_cap_and_follows_cap_edges(
    make_hub: HubMaker,
) -> None:
    hub, clock, _ = await make_hub()
    start, end = SIM_START + 10 * MIN, SIM_START + 20 * MIN
    dr(hub).upsert(
        DrEvent(
            "a",
            "test",
            "site",
            "SIMPLE",
            "level",
            start,
            end,
            (Slot(start, start + 5 * MIN, 60.0), Slot(start + 5 * MIN, end, 30.0)),
        )
    )
    await clock.advance_to(end + MIN)  # load 50 kW throughout: under 60, then over 30
    (row,) = (await hub.services.call("openadr", "report", {}))["events"]
    assert row["seconds_over"] == 300 and row["max_kw"] == 50.0 and row["cap_kw"] == 30.0
    assert row["measured_seconds"] == 600 and row["avg_kw"] == 50.0


async def test_the_record_survives_a_restart_and_open_events_stay_in_force(
    db_url: str, make_hub: HubMaker
) -> None:
    hub, clock, _ = await make_hub(db_url=db_url)
    dr(hub).upsert(event("a", 5, 60, 20.0, level=2))
    dr(hub).upsert(event("b", 1, 2, 40.0))
    await clock.advance(4 * 60)
    await hub.services.call("openadr", "opt_out", {"event_id": "a"})
    await hub.services.call("openadr", "opt_in", {"event_id": "a"})
    await hub.stop()

    hub2, clock2, _phases = await make_hub(db_url=db_url)
    assert list(dr(hub2).events) == ["a"]  # b is over; a has not ended
    assert dr(hub2).events["a"].opt_by == "service"
    await clock2.advance(6 * 60)
    assert cap_now(hub2) == 20.0
    report = await hub2.services.call("openadr", "report", {"since": (SIM_START - MIN).isoformat()})
    rows = {r["event_id"]: r for r in report["events"]}
    assert rows["b"]["status"] == "completed" and rows["b"]["seconds_over"] == 120
    kinds = [h["kind"] for h in rows["a"]["history"]]
    assert kinds == ["received", "opt", "opt", "restored", "start"]
    assert [h["detail"]["opt"] for h in rows["a"]["history"] if h["kind"] == "opt"] == [
        "out", "in"
    ]  # fmt: skip


def test_the_tables_are_exactly_what_the_migrations_build(db_url: str) -> None:
    engine = create_recorder_engine(db_url)
    try:
        upgrade(engine)
        upgrade_branch(engine, store.MIGRATIONS, store.BRANCH)
        with engine.connect() as conn:
            only_ours = {"include_name": lambda name, kind, _p: kind != "table" or bool(
                name and name.startswith("openadr_"))}  # fmt: skip
            context = MigrationContext.configure(conn, opts=only_ours)
            assert compare_metadata(context, store.metadata) == []
    finally:
        engine.dispose()


async def test_an_unknown_node_fails_the_plugin_not_the_hub(tmp_path: Path) -> None:
    config = {"site": SITE, "openadr": {"node": "nowhere"}}
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    hub = create_hub(tmp_path, clock=SimClock(start=SIM_START))
    await hub.start()
    try:
        assert hub.plugins is not None
        assert hub.plugins.records["openadr"].status is PluginStatus.FAILED
        assert hub.state is CoreState.RUNNING
    finally:
        await hub.stop()
