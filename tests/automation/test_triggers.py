"""Triggers on states, events, templates, the hub and the clock: given a hub on the simulated
clock and an automation, when the world changes so, then it runs (or, as written, does not)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.bus import Context
from hub.clock import SimClock
from hub.core import Hub
from tests.automation.conftest import MakeHub
from tests.automation.support import Recorder, record

# The simulated clock starts Monday 2026-03-02 06:00 UTC = 07:00 in Berlin (the hub's zone here).


def recorded(calls: Recorder, key: str = "what") -> list[object]:
    return [data.get(key) for data in calls.data]


async def with_recorder(make_hub: MakeHub, yaml: str, **states: object) -> tuple[Hub, Recorder]:
    holder: dict[str, Recorder] = {}

    async def setup(hub: Hub) -> None:
        holder["r"] = record(hub)
        for entity_id, value in states.items():
            hub.states.set(entity_id.replace("__", "."), value)

    hub = await make_hub(yaml, setup=setup)
    return hub, holder["r"]


# --- state ------------------------------------------------------------------------------------
async def test_state_trigger_from_to_and_attribute_only_changes(make_hub: MakeHub) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: faulted
          triggers:
            - trigger: state
              entity_id: charger.bay_1, charger.bay_2
              from: charging
              to: [faulted, offline]
          actions:
            - action: test.record
              data:
                what: >-
                  {{ trigger.entity_id }}
                  {{ trigger.from_state.state }}>{{ trigger.to_state.state }}
        - id: any_change
          mode: queued
          triggers:
            - platform: state          # the older spelling
              entity_id: charger.bay_1
          actions:
            - action: test.record
              data: {what: "any {{ trigger.to_state.attributes.get('power_w') }}"}
    """, charger__bay_1="charging", charger__bay_2="charging")  # fmt: skip
    hub.states.set("charger.bay_1", "charging", {"power_w": 7000})  # attribute only
    hub.states.set("charger.bay_2", "faulted")
    hub.states.set("charger.bay_1", "available")  # not from charging -> no "faulted" run
    hub.states.set("charger.bay_1", "faulted")
    await hub.block_till_done()
    assert sorted(recorded(calls)) == sorted(
        ["any 7000", "charger.bay_2 charging>faulted", "any None", "any None"]
    )


async def test_state_trigger_not_from_not_to_and_attribute(make_hub: MakeHub) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: left_unavailable
          triggers:
            - trigger: state
              entity_id: charger.bay_1
              not_from: [unavailable, offline]
              not_to: [unavailable, offline]
          actions:
            - action: test.record
              data: {what: "state {{ trigger.to_state.state }}"}
        - id: limit_changed
          triggers:
            - trigger: state
              entity_id: charger.bay_1
              attribute: limit_reason
              to: "paused by charging.pause"
          actions:
            - action: test.record
              data: {what: "attr {{ trigger.attribute }}"}
    """, charger__bay_1="offline")  # fmt: skip
    hub.states.set("charger.bay_1", "available")  # from offline: not_from excludes it
    hub.states.set("charger.bay_1", "charging")
    hub.states.set("charger.bay_1", "charging", {"limit_reason": "paused by charging.pause"})
    hub.states.set(
        "charger.bay_1", "charging", {"limit_reason": "paused by charging.pause", "x": 1}
    )
    hub.states.set("charger.bay_1", "unavailable")  # not_to excludes it
    await hub.block_till_done()
    assert recorded(calls) == ["state charging", "attr limit_reason"]


async def test_state_trigger_for_waits_on_the_hub_clock_and_is_cancelled(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: offline_5_min
          triggers:
            - trigger: state
              entity_id: [charger.bay_1, charger.bay_2]
              to: offline
              for: {minutes: 5}
          actions:
            - action: test.record
              data: {what: "{{ trigger.entity_id }} {{ trigger.for.total_seconds() }}"}
    """, charger__bay_1="available", charger__bay_2="available")  # fmt: skip
    hub.states.set("charger.bay_1", "offline")
    hub.states.set("charger.bay_2", "offline")
    await clock.advance(120)
    hub.states.set("charger.bay_1", "available")  # back within 5 minutes: no alert
    hub.states.set("charger.bay_2", "offline", {"heartbeat": 1})  # attribute only: still offline
    await clock.advance(179)
    assert calls.calls == []
    await clock.advance(1)
    await clock.advance(600)
    await hub.block_till_done()
    assert recorded(calls) == ["charger.bay_2 300.0"]


async def test_state_trigger_for_can_be_a_template(make_hub: MakeHub, clock: SimClock) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: templated_for
          trigger_variables:
            minutes: 2
          triggers:
            - trigger: state
              entity_id: sensor.door
              to: "on"
              for: "00:{{ '%02d' % minutes }}:00"
          actions:
            - action: test.record
              data: {what: "{{ trigger.for.total_seconds() }}"}
    """, sensor__door="off")  # fmt: skip
    hub.states.set("sensor.door", "on")
    await clock.advance(119)
    assert calls.calls == []
    await clock.advance(1)
    await hub.block_till_done()
    assert recorded(calls) == [120.0]


# --- numeric_state ------------------------------------------------------------------------------
async def test_numeric_state_fires_when_crossing_into_the_range_only(make_hub: MakeHub) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: site_high
          mode: queued
          triggers:
            - trigger: numeric_state
              entity_id: sensor.site_power
              above: sensor.site_limit     # a threshold from another entity
              below: 200
          actions:
            - action: test.record
              data: {what: "{{ trigger.to_state.state }}"}
    """, sensor__site_power=95.0, sensor__site_limit=90.0)  # fmt: skip
    # Already above at start-up: Home Assistant does not fire then, nor do we.
    hub.states.set("sensor.site_power", 99.0)
    hub.states.set("sensor.site_power", 80.0)
    hub.states.set("sensor.site_power", 91.0)  # crosses: fires
    hub.states.set("sensor.site_power", 93.0)  # still above: no
    hub.states.set("sensor.site_power", 250.0)  # out of the range (below 200)
    hub.states.set("sensor.site_power", 150.0)  # back in: fires
    hub.states.set("sensor.site_power", "unavailable")
    hub.states.set("sensor.site_power", 120.0)  # from unavailable into the range: fires
    await hub.block_till_done()
    assert recorded(calls) == [91.0, 150.0, 120.0]


async def test_numeric_state_on_an_attribute_or_a_template_with_for(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: current_high
          triggers:
            - trigger: numeric_state
              entity_id: charger.bay_1
              attribute: current_a
              above: 30
          actions:
            - action: test.record
              data: {what: "attr"}
        - id: soc_below_reserve
          triggers:
            - trigger: numeric_state
              entity_id: vehicle.van_17
              value_template: "{{ state.state - state.attributes.reserve }}"
              below: 0
              for: "00:10:00"
          actions:
            - action: test.record
              data: {what: "reserve"}
    """)  # fmt: skip
    hub.states.set("charger.bay_1", "charging", {"current_a": 16.0})
    hub.states.set("vehicle.van_17", 40.0, {"reserve": 30.0})
    hub.states.set("charger.bay_1", "charging", {"current_a": 32.0})
    hub.states.set("vehicle.van_17", 25.0, {"reserve": 30.0})
    await clock.advance(300)
    hub.states.set("vehicle.van_17", 24.0, {"reserve": 30.0})  # still below: the wait goes on
    await clock.advance(300)
    await hub.block_till_done()
    assert recorded(calls) == ["attr", "reserve"]


# --- event --------------------------------------------------------------------------------------
async def test_event_trigger_matches_data_and_context(make_hub: MakeHub) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: boots
          mode: parallel
          triggers:
            - trigger: event
              event_type: [ocpp_boot, ocpp_reboot]
              event_data: {status: Accepted, info: {vendor: ACME}}
          actions:
            - action: test.record
              data: {what: "{{ trigger.event.event_type }} {{ trigger.event.data.charger_id }}"}
        - id: from_user
          triggers:
            - trigger: event
              event_type: manual_override
              context: {user_id: [alice]}
          actions:
            - action: test.record
              data: {what: "override by {{ trigger.event.context.user_id }}"}
    """)  # fmt: skip
    bus = hub.bus
    bus.fire("ocpp_boot", {"charger_id": "a", "status": "Accepted", "info": {"vendor": "ACME"}})
    bus.fire("ocpp_boot", {"charger_id": "b", "status": "Rejected", "info": {"vendor": "ACME"}})
    bus.fire("ocpp_reboot", {"charger_id": "c", "status": "Accepted", "info": {"vendor": "X"}})
    bus.fire("ocpp_reboot", {"charger_id": "d", "status": "Accepted", "info": {"vendor": "ACME"}})
    bus.fire("manual_override", {}, Context(user_id="bob"))
    bus.fire("manual_override", {}, Context(user_id="alice"))
    await hub.block_till_done()
    assert recorded(calls) == ["ocpp_boot a", "ocpp_reboot d", "override by alice"]


# --- template -----------------------------------------------------------------------------------
async def test_template_trigger_fires_on_false_to_true_with_for(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: two_charging
          triggers:
            - trigger: template
              value_template: >-
                {{ states.charger | selectattr('state', 'eq', 'charging') | list | count >= 2 }}
              for: 60
          actions:
            - action: test.record
              data: {what: "two"}
    """, charger__a="charging", charger__b="charging")  # fmt: skip
    await clock.advance(120)  # true when attached: does not fire
    hub.states.set("charger.b", "available")
    hub.states.set("charger.b", "charging")  # false -> true: the minute starts
    await clock.advance(30)
    hub.states.set("charger.a", "finishing")  # false again: cancelled
    hub.states.set("charger.a", "charging")
    await clock.advance(59)
    assert calls.calls == []
    await clock.advance(1)
    await hub.block_till_done()
    assert recorded(calls) == ["two"]


# --- hub ----------------------------------------------------------------------------------------
async def test_hub_start_and_shutdown_triggers(make_hub: MakeHub) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: started
          triggers: [{trigger: hub, event: start}]
          actions: [{action: test.record, data: {what: "start"}}]
        - id: stopping
          triggers: [{trigger: hub, event: shutdown}]
          actions: [{action: test.record, data: {what: "shutdown"}}]
    """)  # fmt: skip
    await hub.block_till_done()
    assert recorded(calls) == ["start"]
    await hub.stop()
    assert recorded(calls) == ["start", "shutdown"]


# --- time ---------------------------------------------------------------------------------------
async def test_time_trigger_at_local_times_on_weekdays(make_hub: MakeHub, clock: SimClock) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: evening
          triggers:
            - trigger: time
              at: ["17:00", 21:00]       # quoted or not (YAML reads 21:00 as 1260 minutes)
              weekday: [mon, tue, wed, thu, fri]
          actions:
            - action: test.record
              data: {what: "{{ trigger.now.strftime('%a %H:%M') }}"}
    """)  # fmt: skip
    await clock.advance_to(datetime(2026, 3, 9, 6, 0, tzinfo=UTC))  # a week, to next Monday 7:00
    await hub.block_till_done()
    days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert recorded(calls) == [f"{d} {t}" for d in days for t in ("17:00", "21:00")]


async def test_time_trigger_from_an_entity_time_or_date_and_time(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: departure_reminder
          triggers:
            - trigger: time
              at:
                - entity_id: sensor.van_17_departure
                  offset: "-00:30:00"
                - input_datetime.shift_start
          actions:
            - action: test.record
              data: {what: "{{ trigger.entity_id }} {{ trigger.now.strftime('%H:%M') }}"}
    """, sensor__van_17_departure="2026-03-02T12:00:00+01:00",
        input_datetime__shift_start="08:15")  # fmt: skip
    await clock.advance(3600 * 3)  # to 10:00 local
    hub.states.set("input_datetime.shift_start", "10:30:00")  # moved: re-armed
    await clock.advance(3600 * 25)
    await hub.block_till_done()
    assert recorded(calls) == [
        "input_datetime.shift_start 08:15",
        "input_datetime.shift_start 10:30",
        "sensor.van_17_departure 11:30",
        "input_datetime.shift_start 10:30",
    ]


async def test_time_pattern_every_15_minutes_and_at_minute_30_of_even_hours(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await with_recorder(make_hub, """
        - id: quarter
          triggers: [{trigger: time_pattern, minutes: /15}]
          actions: [{action: test.record, data: {what: "q {{ trigger.now.strftime('%H:%M:%S') }}"}}]
        - id: even_half
          triggers: [{trigger: time_pattern, hours: /2, minutes: 30}]
          actions: [{action: test.record, data: {what: "h {{ trigger.now.strftime('%H:%M:%S') }}"}}]
    """)  # fmt: skip
    await clock.advance(timedelta(hours=2, minutes=1).total_seconds())
    await hub.block_till_done()
    quarters = [v for v in recorded(calls) if str(v).startswith("q")]
    halves = [v for v in recorded(calls) if str(v).startswith("h")]
    assert quarters == [
        "q 07:15:00", "q 07:30:00", "q 07:45:00", "q 08:00:00",
        "q 08:15:00", "q 08:30:00", "q 08:45:00", "q 09:00:00",
    ]  # fmt: skip
    assert halves == ["h 08:30:00"]


async def test_time_triggers_across_the_spring_dst_change(make_hub: MakeHub) -> None:
    # Berlin skips 02:00-03:00 on Sunday 2026-03-29: a half-hourly pattern goes 01:30, 03:00;
    # a 02:30 time of day happens at the first moment after the gap.
    clock = SimClock(start=datetime(2026, 3, 28, 23, 0, tzinfo=UTC))  # 00:00 local
    holder: dict[str, Recorder] = {}

    async def setup(hub: Hub) -> None:
        holder["r"] = record(hub)

    hub = await make_hub("""
        - id: half_hourly
          triggers: [{trigger: time_pattern, minutes: /30}]
          actions: [{action: test.record, data: {what: "p {{ now().strftime('%H:%M %Z') }}"}}]
        - id: at_half_past_two
          triggers: [{trigger: time, at: "02:30"}]
          actions: [{action: test.record, data: {what: "t {{ now().strftime('%H:%M %Z') }}"}}]
    """, sim=clock, setup=setup)  # fmt: skip
    await clock.advance(4 * 3600)
    await hub.block_till_done()
    assert recorded(holder["r"]) == [
        "p 00:30 CET", "p 01:00 CET", "p 01:30 CET", "p 03:00 CEST", "t 03:30 CEST",
        "p 03:30 CEST", "p 04:00 CEST", "p 04:30 CEST", "p 05:00 CEST",
    ]  # fmt: skip
