"""Run modes (single, restart, queued, parallel with max and max_exceeded) and traces: what each
run recorded, how many are kept, and the context chain from a trigger down to a charger command."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from hub.automation import get_trace_for_context, get_traces
from hub.charging.charger import (
    ChargerCapability,
    ChargerData,
    ChargerEntity,
    ChargingSchedule,
    CommandResult,
)
from hub.clock import SimClock
from hub.core import Hub
from hub.services import ServiceCall
from tests.automation.conftest import MakeHub
from tests.automation.support import Recorder, record


def slow(mode: str, extra: str = "") -> str:
    return f"""
        - id: slow
          mode: {mode}
          {extra}
          triggers: [{{trigger: event, event_type: go}}]
          actions:
            - {{action: test.record, data: {{start: "{{{{ trigger.event.data.n }}}}"}}}}
            - delay: 60
            - {{action: test.record, data: {{end: "{{{{ trigger.event.data.n }}}}"}}}}
    """


async def fire_three(hub: Hub, clock: SimClock) -> None:
    for n in (1, 2, 3):
        hub.bus.fire("go", {"n": n})
        await clock.advance(10)


async def start(make_hub: MakeHub, yaml: str) -> tuple[Hub, Recorder]:
    holder: dict[str, Recorder] = {}

    async def setup(hub: Hub) -> None:
        holder["r"] = record(hub)

    return await make_hub(yaml, setup=setup), holder["r"]


def executions(hub: Hub) -> list[str]:
    return [t["script_execution"] for t in reversed(get_traces(hub, "slow"))]


async def test_single_ignores_a_trigger_while_running_and_says_so(
    make_hub: MakeHub, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    hub, calls = await start(make_hub, slow("single"))
    await fire_three(hub, clock)
    await clock.advance(120)
    assert calls.data == [{"start": 1}, {"end": 1}]
    assert executions(hub) == ["finished", "failed_single", "failed_single"]
    assert caplog.text.count("automation.slow: already running") == 2


async def test_restart_cancels_the_run_in_progress(make_hub: MakeHub, clock: SimClock) -> None:
    hub, calls = await start(make_hub, slow("restart"))
    await fire_three(hub, clock)
    await clock.advance(120)
    assert calls.data == [{"start": 1}, {"start": 2}, {"start": 3}, {"end": 3}]
    assert executions(hub) == ["cancelled", "cancelled", "finished"]
    cancelled = get_traces(hub, "slow")[-1]["steps"][1]
    assert (cancelled["action"], cancelled["error"]) == ("delay", "cancelled")


async def test_queued_runs_one_after_another_up_to_max(
    make_hub: MakeHub, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    hub, calls = await start(make_hub, slow("queued", "max: 2\n          max_exceeded: error"))
    await fire_three(hub, clock)
    assert hub.states.get("automation.slow").attributes["current"] == 2
    await clock.advance(200)
    assert calls.data == [{"start": 1}, {"end": 1}, {"start": 2}, {"end": 2}]
    assert executions(hub) == ["finished", "finished", "failed_max_runs"]
    assert "maximum number of runs exceeded (2)" in caplog.text
    assert [r.levelno for r in caplog.records if "exceeded" in r.message] == [logging.ERROR]
    assert hub.states.get("automation.slow").attributes["current"] == 0


async def test_parallel_runs_together_up_to_max_silently(
    make_hub: MakeHub, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    hub, calls = await start(make_hub, slow("parallel", "max: 2\n          max_exceeded: silent"))
    await fire_three(hub, clock)
    await clock.advance(120)
    assert calls.data == [{"start": 1}, {"start": 2}, {"end": 1}, {"end": 2}]
    assert executions(hub) == ["finished", "finished", "failed_max_runs"]
    assert "exceeded" not in caplog.text


class LabCharger(ChargerEntity):
    """A charger that takes any limit it is given."""

    supported = frozenset({ChargerCapability.LIMIT_AMPS})

    def __init__(self) -> None:
        super().__init__("lab-1", "bay 1", data=ChargerData(status="charging"))
        self.limits: list[float] = []

    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        self.limits.append(schedule.periods[0].limit)
        self.update(limit_reason=f"automation {schedule.periods[0].limit:g} A")
        return CommandResult(True)


async def test_traces_keep_the_last_runs_and_the_chain_down_to_the_charger(
    make_hub: MakeHub,
) -> None:
    charger = LabCharger()
    set_by: list[ServiceCall] = []

    async def setup(hub: Hub) -> None:
        await hub.entities.add("lab", [charger])

        def set_mode(call: ServiceCall) -> None:  # a service that writes a state as its caller
            set_by.append(call)
            hub.states.set("sensor.site_mode", call.data["mode"], context=call.context)

        hub.services.register("site", "set_mode", set_mode)
        record(hub)

    hub = await make_hub("""
        - id: evening
          stored_traces: 2
          triggers: [{trigger: event, event_type: go}]
          actions:
            - action: site.set_mode
              data: {mode: "evening {{ trigger.event.data.n }}"}
            - action: charger.set_limit
              target: {entity_id: charger.bay_1}
              data: {limit: 10, unit: A}
        - id: follow_up
          triggers: [{trigger: state, entity_id: sensor.site_mode}]
          actions:
            - {action: test.record, data: {mode: "{{ trigger.to_state.state }}"}}
    """, setup=setup)  # fmt: skip
    for n in (1, 2, 3):
        hub.bus.fire("go", {"n": n})
        await hub.block_till_done()
    traces = get_traces(hub, "automation.evening")
    assert [t["trigger"]["event"]["data"]["n"] for t in traces] == [3, 2]  # newest first, 2 kept
    json.dumps(traces)  # what the web API will send
    run = traces[0]
    assert charger.limits == [10.0, 10.0, 10.0]
    # What the run caused, in order: its service calls (children of the run's context) and the
    # states they wrote with that context, down to the charger's new limit.
    caused = [(e["event_type"], e.get("service") or e.get("entity_id")) for e in run["events"]]
    assert caused == [
        ("call_service", "set_mode"),
        ("state_changed", "sensor.site_mode"),
        ("call_service", "set_limit"),
    ]
    assert all(e["context"]["parent_id"] == run["context"]["id"] for e in run["events"])
    # From the state back to the run that set it, and on to the run it triggered in turn.
    state = hub.states.get("sensor.site_mode")
    found = get_trace_for_context(hub, state.context.id, state.context.parent_id)
    assert found is not None and found["run_id"] == run["run_id"]
    follow = get_traces(hub, "follow_up")[0]
    assert follow["context"]["parent_id"] == state.context.id
    assert set_by[-1].context.parent_id == run["context"]["id"]


async def test_trace_of_a_failed_template_is_clear_and_json(make_hub: MakeHub) -> None:
    hub, _ = await start(make_hub, """
        - id: broken_template
          triggers: [{trigger: event, event_type: go}]
          variables:
            limit: "{{ states('sensor.limit') | float * 2 }}"
          actions:
            - {action: test.record, data: {limit: "{{ limit }}"}}
    """)  # fmt: skip
    hub.bus.fire("go")
    await hub.block_till_done()
    trace: dict[str, Any] = get_traces(hub, "broken_template")[0]
    assert trace["script_execution"] == "error"
    assert trace["error"].startswith("variables: ")
    assert "float got an invalid input 'unknown'" in trace["error"]
    assert json.loads(json.dumps(trace)) == trace
