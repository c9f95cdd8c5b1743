"""Actions as a run performs them, on the simulated clock: service calls with templated data and
targets, delays and waits, choose/if/repeat/parallel, variables, events, stop, notify, errors."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import plugins.notify as notify_plugin
from hub.clock import SimClock
from hub.core import Hub
from tests.automation.conftest import MakeHub
from tests.automation.support import Recorder, last_trace, record


async def run_automation(
    make_hub: MakeHub, actions: str, *, states: dict[str, Any] | None = None, **options: Any
) -> tuple[Hub, Recorder]:
    """An automation `under_test` whose actions are given; it runs when the event `go` fires."""
    holder: dict[str, Recorder] = {}

    async def setup(hub: Hub) -> None:
        holder["r"] = record(hub)
        for entity_id, value in (states or {}).items():
            hub.states.set(entity_id, value)

    body = "\n".join("            " + line for line in actions.strip().splitlines())
    yaml = f"""
        - id: under_test
          mode: {options.pop("mode", "single")}
          variables:
            site_kw: 40
          triggers:
            - {{trigger: event, event_type: go}}
          actions:
{body}
    """
    hub = await make_hub(yaml, setup=setup, **options)
    return hub, holder["r"]


async def go(hub: Hub, data: dict[str, Any] | None = None) -> None:
    hub.bus.fire("go", data or {})
    await hub.block_till_done()


async def test_service_calls_render_data_and_fan_out_over_targets(make_hub: MakeHub) -> None:
    hub, calls = await run_automation(make_hub, """
- action: test.record
  data:
    limit_kw: "{{ site_kw * 2 }}"
    reason: "{{ trigger.event.data.why }}"
    fixed: [1, "{{ 1 + 1 }}"]
  target:
    entity_id: [charger.a, charger.b]
    node: panel_1
  response_variable: answers
- service: test.record            # the older spelling, with data_template and entity_id
  entity_id: charger.c
  data_template: {count: "{{ answers | count }}", last: "{{ answers[-1].n }}"}
""")  # fmt: skip
    await go(hub, {"why": "peak"})
    assert calls.data == [
        {"limit_kw": 80, "reason": "peak", "fixed": [1, 2], "node": "panel_1",
         "entity_id": "charger.a"},
        {"limit_kw": 80, "reason": "peak", "fixed": [1, 2], "node": "panel_1",
         "entity_id": "charger.b"},
        {"count": 2, "last": 2, "entity_id": "charger.c"},
    ]  # fmt: skip
    trace = last_trace(hub, "under_test")
    run_context = trace["context"]["id"]
    assert all(call.context.parent_id == run_context for call in calls.calls)
    assert trace["script_execution"] == "finished"
    assert [s["path"] for s in trace["steps"]] == ["action/0", "action/1"]


async def test_delay_and_wait_template_on_the_hub_clock(make_hub: MakeHub, clock: SimClock) -> None:
    hub, calls = await run_automation(make_hub, """
- delay: "00:{{ '%02d' % 5 }}:00"
- action: test.record
  data: {at: "{{ now().strftime('%H:%M') }}"}
- wait_template: "{{ is_state('charger.a', 'charging') }}"
  timeout: {minutes: 10}
- action: test.record
  data: {at: "{{ now().strftime('%H:%M') }}", completed: "{{ wait.completed }}",
         remaining: "{{ wait.remaining }}"}
- wait_template: "{{ is_state('charger.a', 'faulted') }}"
  timeout: 60
  continue_on_timeout: false
- action: test.record
  data: {never: true}
""", states={"charger.a": "available"})  # fmt: skip
    hub.bus.fire("go")
    await clock.advance(300)
    await clock.advance(120)
    hub.states.set("charger.a", "charging")
    await clock.advance(120)
    await hub.block_till_done()
    assert calls.data == [
        {"at": "07:05"},
        {"at": "07:07", "completed": True, "remaining": 480.0},
    ]
    trace = last_trace(hub, "under_test")
    assert (trace["script_execution"], trace["finish"]) == ("timeout", "2026-03-02T06:08:00+00:00")


async def test_wait_for_trigger_sets_wait_trigger_or_times_out(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await run_automation(make_hub, """
- wait_for_trigger:
    - trigger: state
      entity_id: charger.a
      to: charging
    - trigger: event
      event_type: cancel
  timeout: "00:10:00"
- action: test.record
  data:
    by: "{{ wait.trigger.platform if wait.trigger else 'timeout' }}"
    remaining: "{{ wait.remaining }}"
""", states={"charger.a": "available"}, mode="parallel")  # fmt: skip
    hub.bus.fire("go")
    await clock.advance(60)
    hub.states.set("charger.a", "charging")
    await clock.advance(1)
    hub.bus.fire("go")
    await clock.advance(660)
    await hub.block_till_done()
    assert calls.data == [{"by": "state", "remaining": 540.0}, {"by": "timeout", "remaining": 0.0}]


async def test_choose_if_and_stop(make_hub: MakeHub) -> None:
    hub, calls = await run_automation(make_hub, """
- choose:
    - conditions: "{{ trigger.event.data.level == 1 }}"
      sequence: [{action: test.record, data: {choice: one}}]
    - conditions:
        - {condition: template, value_template: "{{ trigger.event.data.level == 2 }}"}
      sequence: [{action: test.record, data: {choice: two}}]
  default:
    - action: test.record
      data: {choice: default}
- if:
    - "{{ trigger.event.data.level > 1 }}"
  then:
    - {action: test.record, data: {branch: then}}
  else:
    - {action: test.record, data: {branch: else}}
- stop: "level {{ trigger.event.data.level }} handled"
- action: test.record
  data: {never: true}
""")  # fmt: skip
    for level in (1, 2, 3):
        await go(hub, {"level": level})
    assert calls.data == [
        {"choice": "one"}, {"branch": "else"},
        {"choice": "two"}, {"branch": "then"},
        {"choice": "default"}, {"branch": "then"},
    ]  # fmt: skip
    trace = last_trace(hub, "under_test")
    assert (trace["script_execution"], trace["stop_reason"]) == ("finished", "level 3 handled")
    paths = [s["path"] for s in trace["steps"]]
    assert paths == ["action/0", "action/0/default/0", "action/1", "action/1/then/0", "action/2"]


async def test_repeat_count_while_until_for_each_and_a_condition_ending_an_iteration(
    make_hub: MakeHub,
) -> None:
    hub, calls = await run_automation(make_hub, """
- repeat:
    count: "{{ 1 + 2 }}"
    sequence:
      - action: test.record
        data: {count: "{{ repeat.index }}", last: "{{ repeat.last }}"}
- repeat:
    while: "{{ repeat.index <= 2 }}"
    sequence: [{action: test.record, data: {while: "{{ repeat.index }}"}}]
- repeat:
    until:
      - condition: template
        value_template: "{{ repeat.index == 2 }}"
    sequence: [{action: test.record, data: {until: "{{ repeat.index }}"}}]
- repeat:
    for_each: "{{ ['charger.a', 'charger.b', 'charger.c'] }}"
    sequence:
      - condition: template            # ends this iteration only
        value_template: "{{ repeat.item != 'charger.b' }}"
      - action: test.record
        data: {item: "{{ repeat.item }}", first: "{{ repeat.first }}"}
- repeat:
    for_each: [{node: a, kw: 5}, {node: b, kw: 7}]
    sequence: [{action: test.record, data: {node: "{{ repeat.item.node }}"}}]
""")  # fmt: skip
    await go(hub)
    assert calls.data == [
        {"count": 1, "last": False}, {"count": 2, "last": False}, {"count": 3, "last": True},
        {"while": 1}, {"while": 2}, {"until": 1}, {"until": 2},
        {"item": "charger.a", "first": True}, {"item": "charger.c", "first": False},
        {"node": "a"}, {"node": "b"},
    ]  # fmt: skip


async def test_variables_are_scoped_like_home_assistant(make_hub: MakeHub) -> None:
    hub, calls = await run_automation(make_hub, """
- variables:
    total: 0
    unit: kW
- repeat:
    count: 3
    sequence:
      - variables:
          total: "{{ total + repeat.index }}"     # defined outside: updated there
          inner: "{{ repeat.index }}"             # new: lives in this iteration only
- action: test.record
  data: {total: "{{ total }} {{ unit }}", site: "{{ site_kw }}", inner: "{{ inner is defined }}"}
""")  # fmt: skip
    await go(hub)
    assert calls.data == [{"total": "6 kW", "site": 40, "inner": False}]
    changed = [s.get("changed_variables") for s in last_trace(hub, "under_test")["steps"]]
    assert changed[0] == {"total": 0, "unit": "kW"}


async def test_event_parallel_sequence_and_enabled_false(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await run_automation(make_hub, """
- event: site_capped
  event_data: {kw: "{{ site_kw }}"}
- parallel:
    - sequence:
        - delay: 60
        - {action: test.record, data: {branch: slow}}
    - {action: test.record, data: {branch: fast}}
    - sequence:
        - condition: "{{ false }}"             # ends only this branch
        - {action: test.record, data: {branch: never}}
- action: test.record
  enabled: false
  data: {disabled: true}
- {action: test.record, data: {after: "{{ now().strftime('%H:%M:%S') }}"}}
""")  # fmt: skip
    heard: list[Any] = []
    hub.bus.listen("site_capped", heard.append)
    hub.bus.fire("go")
    await clock.advance(61)
    await hub.block_till_done()
    assert calls.data == [{"branch": "fast"}, {"branch": "slow"}, {"after": "07:01:00"}]
    assert [dict(e.data) for e in heard] == [{"kw": 40}]
    run = last_trace(hub, "under_test")["context"]["id"]
    assert heard[0].context.parent_id == run


async def test_a_failing_action_is_traced_and_continue_on_error_goes_on(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    hub, calls = await run_automation(make_hub, """
- action: charging.no_such_service
  continue_on_error: true
- action: test.record
  data: {kw: "{{ site_kw }}"}
- action: test.record
  data: {bad: "{{ states('sensor.missing') | float }}"}
- action: test.record
  data: {never: true}
""")  # fmt: skip
    await go(hub)
    assert calls.data == [{"kw": 40}]
    trace = last_trace(hub, "under_test")
    assert trace["script_execution"] == "error"
    assert trace["error"].startswith("action/2: ")
    assert "float got an invalid input 'unknown' and no default" in trace["error"]
    assert trace["steps"][0]["error"] == "service charging.no_such_service is not registered"
    assert "automation.under_test: action/2 failed" in caplog.text
    calls.fail = True  # the device behind the service fails: the run ends, the hub goes on
    await go(hub)
    assert "RuntimeError: the device did not answer" in last_trace(hub, "under_test")["error"]
    assert hub.states.get("automation.under_test").state == "on"


async def test_notify_sends_through_a_configured_notifier(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "plugins.notify")
    hub, _ = await run_automation(make_hub, """
- notify: ops_log
  title: "Site capped"
  message: "The site is capped at {{ site_kw }} kW ({{ trigger.event.data.why }})."
- notify: nobody
  message: never delivered
""", extra="notify:\n  - {name: ops_log, platform: log, level: warning}\n",
        plugins={"notify": notify_plugin})  # fmt: skip
    await go(hub, {"why": "demand response"})
    assert "[Site capped] The site is capped at 40 kW (demand response)." in caplog.text
    trace = last_trace(hub, "under_test")
    assert trace["steps"][0]["result"]["service"] == "notify.ops_log"
    assert trace["steps"][1]["error"] == "service notify.nobody is not registered"


async def test_stop_with_error_counts_as_a_failed_run(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    hub, calls = await run_automation(make_hub, """
- if: "{{ states('sensor.site_power') | float(0) > site_kw }}"
  then:
    - stop: "site at {{ states('sensor.site_power') }} kW, over {{ site_kw }}"
      error: true
- action: test.record
  data: {ok: true}
""", states={"sensor.site_power": 55.0})  # fmt: skip
    await go(hub)
    trace = last_trace(hub, "under_test")
    assert (trace["script_execution"], trace["error"]) == ("error", "site at 55.0 kW, over 40")
    assert "automation.under_test stopped with an error: site at 55.0 kW, over 40" in caplog.text
    assert calls.calls == []
