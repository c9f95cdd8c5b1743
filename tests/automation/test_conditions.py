"""Conditions as a site writes them: state (with for), numeric_state, time (weekdays, across
midnight), template and its shorthand, and/or/not, trigger ids, price; each result is traced."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.clock import SimClock
from hub.core import Hub
from tests.automation.conftest import MakeHub
from tests.automation.support import Recorder, last_trace, record


async def hub_with(make_hub: MakeHub, conditions: str, **states: object) -> tuple[Hub, Recorder]:
    """One automation per named condition block, each run by the event `check`."""
    holder: dict[str, Recorder] = {}

    async def setup(hub: Hub) -> None:
        holder["r"] = record(hub)
        for entity_id, value in states.items():
            hub.states.set(entity_id.replace("__", "."), value)

    hub = await make_hub(conditions, setup=setup)
    return hub, holder["r"]


def passed(calls: Recorder) -> list[str]:
    return sorted(d["name"] for d in calls.data)


def automation(name: str, conditions: str) -> str:
    body = "\n".join("            " + line for line in conditions.strip().splitlines())
    return f"""
        - id: {name}
          triggers:
            - {{trigger: event, event_type: check, id: checked}}
            - {{trigger: event, event_type: other, id: other}}
          conditions:
{body}
          actions:
            - {{action: test.record, data: {{name: {name}}}}}
"""


async def check(hub: Hub, event: str = "check") -> None:
    hub.bus.fire(event)
    await hub.block_till_done()


async def test_state_and_numeric_state_conditions(make_hub: MakeHub, clock: SimClock) -> None:
    yaml = (
        automation("charging_any", """
- condition: state
  entity_id: [charger.a, charger.b]
  state: [charging, suspended_ev]
  match: any""")
        + automation("charging_all", """
- {condition: state, entity_id: [charger.a, charger.b], state: charging}""")
        + automation("held_10_min", """
- {condition: state, entity_id: charger.a, state: charging, for: {minutes: 10}}""")
        + automation("attribute", """
- {condition: state, entity_id: charger.a, attribute: phases, state: 3}""")
        + automation("power_band", """
- {condition: numeric_state, entity_id: sensor.site_power, above: 10, below: sensor.site_limit}""")
        + automation("soc_low", """
- condition: numeric_state
  entity_id: vehicle.van_17
  value_template: "{{ state.state - state.attributes.reserve }}"
  below: 0""")
    )  # fmt: skip
    hub, calls = await hub_with(make_hub, yaml, sensor__site_limit=50.0)
    hub.states.set("charger.a", "charging", {"phases": 3})
    hub.states.set("charger.b", "available")
    hub.states.set("sensor.site_power", 30.0)
    hub.states.set("vehicle.van_17", 20.0, {"reserve": 25.0})
    await clock.advance(300)
    await check(hub)
    assert passed(calls) == ["attribute", "charging_any", "power_band", "soc_low"]
    calls.calls.clear()
    hub.states.set("charger.b", "charging")
    hub.states.set("sensor.site_power", 60.0)
    await clock.advance(300)
    await check(hub)
    assert passed(calls) == ["attribute", "charging_all", "charging_any", "held_10_min", "soc_low"]
    trace = last_trace(hub, "power_band")
    assert trace["script_execution"] == "failed_conditions"
    assert trace["conditions"] == [
        {"path": "condition/0", "condition": "numeric_state", "result": False,
         "timestamp": "2026-03-02T06:10:00+00:00"},
    ]  # fmt: skip


async def test_time_condition_weekdays_and_across_midnight(
    make_hub: MakeHub, clock: SimClock
) -> None:
    yaml = (
        automation("evening_peak", """
- {condition: time, after: "17:00", before: "21:00", weekday: [mon, tue, wed, thu, fri]}""")
        + automation("night", """
- {condition: time, after: "22:00", before: "06:00"}""")
        + automation("from_entity", """
- {condition: time, after: input_datetime.shift_start}""")
    )  # fmt: skip
    hub, calls = await hub_with(make_hub, yaml, input_datetime__shift_start="18:30:00")
    results = {}
    for day, hour in ((2, 17), (2, 23), (3, 3), (3, 19), (3, 21), (7, 18)):  # local hours
        await clock.advance_to(datetime(2026, 3, day, hour - 1, 0, tzinfo=UTC))
        calls.calls.clear()
        await check(hub)
        results[f"{day} {hour:02d}"] = passed(calls)
    assert results == {
        "2 17": ["evening_peak"],
        "2 23": ["from_entity", "night"],
        "3 03": ["night"],
        "3 19": ["evening_peak", "from_entity"],
        "3 21": ["from_entity"],  # before is not included
        "7 18": [],  # Saturday
    }


async def test_template_shorthand_and_or_not_and_trigger_id(make_hub: MakeHub) -> None:
    yaml = (
        automation("shorthand", """
- "{{ is_state('charger.a', 'charging') }}"
- condition: "{{ states('sensor.site_power') | float > 5 }}\"""")
        + automation("grouped", """
- or:
    - {condition: state, entity_id: charger.a, state: faulted}
    - and:
        - {condition: state, entity_id: charger.a, state: charging}
        - not:
            - {condition: numeric_state, entity_id: sensor.site_power, above: 100}""")
        + automation("by_trigger", """
- {condition: trigger, id: other}""")
        + automation("disabled", """
- {condition: template, value_template: "{{ false }}", enabled: false}""")
    )  # fmt: skip
    hub, calls = await hub_with(make_hub, yaml, charger__a="charging", sensor__site_power=50.0)
    await check(hub)
    assert passed(calls) == ["disabled", "grouped", "shorthand"]
    calls.calls.clear()
    hub.states.set("sensor.site_power", 150.0)
    await check(hub, "other")
    assert passed(calls) == ["by_trigger", "disabled", "shorthand"]
    grouped = last_trace(hub, "grouped")["conditions"]
    assert [(c["path"], c["condition"], c["result"]) for c in grouped] == [
        ("condition/0/conditions/0", "state", False),
        ("condition/0/conditions/1/conditions/0", "state", True),
        ("condition/0/conditions/1/conditions/1/conditions/0", "numeric_state", True),
        ("condition/0/conditions/1/conditions/1", "not", False),
        ("condition/0/conditions/1", "and", False),
        ("condition/0", "or", False),
    ]


async def test_a_condition_that_fails_to_render_is_false_and_says_why(make_hub: MakeHub) -> None:
    hub, calls = await hub_with(make_hub, automation("broken", """
- "{{ states('sensor.x') | float > 1 }}\""""))  # fmt: skip
    await check(hub)
    assert calls.calls == []
    trace = last_trace(hub, "broken")
    assert trace["script_execution"] == "failed_conditions"
    assert "float got an invalid input 'unknown'" in trace["conditions"][0]["error"]


async def test_price_condition_on_the_current_price(make_hub: MakeHub) -> None:
    yaml = automation("cheap_now", """
- {condition: price, entity_id: tariff.spot, below: 0.25}""") + automation("dear_now", """
- {condition: price, entity_id: tariff.spot, above: sensor.max_price}""")  # fmt: skip
    hub, calls = await hub_with(make_hub, yaml, tariff__spot=0.20, sensor__max_price=0.30)
    await check(hub)
    hub.states.set("tariff.spot", 0.42)
    await check(hub)
    hub.states.set("tariff.spot", "unavailable")
    await check(hub)
    assert [d["name"] for d in calls.data] == ["cheap_now", "dear_now"]
