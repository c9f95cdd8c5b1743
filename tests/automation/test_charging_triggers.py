"""Charging triggers on the simulated clock: a tariff's price crossing a threshold (now and ahead),
the cheapest hours of a window, sessions starting, stopping and suspending, demand response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import plugins.tariffs as tariffs_plugin
from hub.charging.session import EVENT_SESSION_STARTED, EVENT_SESSION_STOPPED
from hub.charging.signals import SignalStore, Slot, TimeSeries
from hub.clock import SimClock
from hub.core import Hub
from tests.automation.conftest import MakeHub
from tests.automation.support import Recorder, record

BERLIN = "Europe/Berlin"
TOU = """
tariffs:
  - name: grid_import
    source:
      tou:
        periods:
          - {name: peak, days: [weekday], start: "08:00", end: "20:00", price: 0.34}
          - {name: off_peak, price: 0.22}
"""
# Monday 2026-03-02, local (UTC+1) hour -> price; the night is where the cheap hours are.
NIGHT = {22: 0.20, 23: 0.18, 0: 0.15, 1: 0.05, 2: 0.12, 3: 0.06, 4: 0.07, 5: 0.20, 6: 0.25}


def spot_series() -> TimeSeries:
    """Hourly prices from Monday 07:00 to Wednesday 07:00 local: 0.30 by day, NIGHT at night."""
    start = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 07:00 local
    slots = []
    for n in range(48):
        t = start + timedelta(hours=n)
        slots.append(Slot(t, t + timedelta(hours=1), NIGHT.get((t.hour + 1) % 24, 0.30)))
    return TimeSeries(slots, unit="EUR/kWh", source="test")


async def spot_tariff(hub: Hub) -> None:
    SignalStore.of(hub).publish("prices.spot", spot_series())
    hub.states.set("tariff.spot", 0.30, {"signal": "prices.spot"})


def recorded(calls: Recorder) -> list[object]:
    return [d["what"] for d in calls.data]


async def recording(make_hub: MakeHub, yaml: str, **options: object) -> tuple[Hub, Recorder]:
    holder: dict[str, Recorder] = {}
    before = options.pop("before", None)

    async def setup(hub: Hub) -> None:
        holder["r"] = record(hub)
        if before is not None:
            await before(hub)  # type: ignore[operator]

    hub = await make_hub(yaml, setup=setup, **options)
    return hub, holder["r"]


async def test_price_above_and_below_the_current_price_of_a_tou_tariff(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await recording(make_hub, """
        - id: price_watch
          mode: queued
          triggers:
            - {trigger: price, above: 0.30, id: high}
            - {trigger: price, below: 0.30, id: low}
          actions:
            - action: test.record
              data:
                what: "{{ trigger.id }} {{ trigger.price }} {{ now().strftime('%H:%M') }}"
    """, extra=TOU, plugins={"tariffs": tariffs_plugin})  # fmt: skip
    assert hub.states.get("tariff.grid_import").state == 0.22  # Monday 07:00
    await clock.advance(14 * 3600)  # to 21:00
    await hub.block_till_done()
    assert recorded(calls) == ["high 0.34 08:00", "low 0.22 20:00"]


async def test_price_upcoming_fires_when_the_price_ahead_crosses(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await recording(make_hub, """
        - id: peak_ahead
          triggers:
            - trigger: price
              entity_id: tariff.grid_import
              above: 0.30
              upcoming: "00:30:00"
          actions:
            - action: test.record
              data: {what: "{{ now().strftime('%H:%M') }} for {{ trigger.at.strftime('%H:%M') }}"}
    """, extra=TOU, plugins={"tariffs": tariffs_plugin})  # fmt: skip
    await clock.advance(25 * 3600)
    await hub.block_till_done()
    # 07:30 for Monday's peak at 08:00; then 07:30 on Tuesday again (20:00 ends it, re-arming).
    assert recorded(calls) == ["07:30 for 08:00", "07:30 for 08:00"]


async def test_cheapest_hours_of_a_night_window_start_end_and_late(
    make_hub: MakeHub, clock: SimClock
) -> None:
    hub, calls = await recording(make_hub, """
        - id: cheap_start
          mode: queued
          triggers:
            - trigger: price
              entity_id: tariff.spot
              cheapest_hours: 3
              window_start: "22:00"
              window_end: "07:00"
          actions:
            - action: test.record
              data:
                what: >-
                  start {{ now().strftime('%H:%M') }}
                  {{ trigger.start[11:16] }}-{{ trigger.end[11:16] }} {{ trigger.late }}
        - id: cheap_end
          mode: queued
          triggers:
            - {trigger: price, entity_id: tariff.spot, cheapest_hours: 3, window_start: "22:00",
               window_end: "07:00", event: end}
          actions:
            - action: test.record
              data: {what: "end {{ now().strftime('%H:%M') }}"}
        - id: switched_on_late
          initial_state: false
          triggers:
            - {trigger: price, entity_id: tariff.spot, cheapest_hours: 3, window_start: "22:00",
               window_end: "07:00"}
          conditions:
            - {condition: price, entity_id: tariff.spot, cheapest_hours: 3, window_start: "22:00",
               window_end: "07:00"}
          actions:
            - action: test.record
              data: {what: "late {{ now().strftime('%H:%M') }} {{ trigger.late }}"}
    """, before=spot_tariff)  # fmt: skip
    await clock.advance_to(datetime(2026, 3, 3, 2, 30, tzinfo=UTC))  # Tuesday 03:30 local
    await hub.services.call("automation", "turn_on", {"entity_id": "automation.switched_on_late"})
    await clock.advance_to(datetime(2026, 3, 3, 7, 0, tzinfo=UTC))
    await hub.block_till_done()
    assert recorded(calls) == [
        "start 01:00 01:00-02:00 False",
        "end 02:00",
        "start 03:00 03:00-05:00 False",
        "late 03:30 True",
        "end 05:00",
    ]


async def test_cheapest_hours_before_a_departure_held_by_an_entity(
    make_hub: MakeHub, clock: SimClock
) -> None:
    async def before(hub: Hub) -> None:
        await spot_tariff(hub)
        hub.states.set("sensor.van_17_departure", "2026-03-03T04:30:00+01:00")

    hub, calls = await recording(make_hub, """
        - id: before_departure
          triggers:
            - {trigger: price, entity_id: tariff.spot, cheapest_hours: 1.5,
               before: sensor.van_17_departure}
          actions:
            - action: test.record
              data:
                what: "{{ now().strftime('%H:%M') }}-{{ trigger.end[11:16] }} {{ trigger.price }}"
    """, before=before)  # fmt: skip
    await clock.advance(24 * 3600)
    await hub.block_till_done()
    # The 24 h before 04:30: 01:00 (0.05) is the cheapest hour, then half of 03:00 (0.06).
    assert recorded(calls) == ["01:00-02:00 0.05", "03:00-03:30 0.06"]


async def test_session_started_stopped_and_suspended_with_filters(make_hub: MakeHub) -> None:
    hub, calls = await recording(make_hub, """
        - id: sessions
          mode: queued
          triggers:
            - trigger: session
              event: [started, stopped, suspended]
              entity_id: [charger.bay_1, charger.bay_2]
          actions:
            - action: test.record
              data: {what: "{{ trigger.event }} {{ trigger.entity_id }} {{ trigger.id_tag }}"}
        - id: van_17_card
          triggers:
            - {trigger: session, event: started, id_tag: "04A1B2C3"}
          actions:
            - action: test.record
              data: {what: "van 17 at {{ trigger.entity_id }}"}
    """)  # fmt: skip
    bus = hub.bus
    bus.fire(EVENT_SESSION_STARTED, {"entity_id": "charger.bay_1", "id_tag": "04A1B2C3",
                                     "session_id": "s1"})  # fmt: skip
    bus.fire(EVENT_SESSION_STARTED, {"entity_id": "charger.bay_9", "id_tag": "04B2C3D4",
                                     "session_id": "s2"})  # fmt: skip
    hub.states.set("charger.bay_1", "charging", {"session_id": "s1", "id_tag": "04A1B2C3"})
    hub.states.set("charger.bay_1", "suspended_ev", {"session_id": "s1", "id_tag": "04A1B2C3"})
    hub.states.set("charger.bay_1", "suspended_ev", {"session_id": "s1", "id_tag": "x"})
    hub.states.set("charger.bay_1", "suspended_evse", {"session_id": "s1", "id_tag": "04A1B2C3"})
    bus.fire(EVENT_SESSION_STOPPED, {"entity_id": "charger.bay_1", "id_tag": "04A1B2C3",
                                     "session_id": "s1", "energy_wh": 12000.0})  # fmt: skip
    await hub.block_till_done()
    assert recorded(calls) == [
        "started charger.bay_1 04A1B2C3",
        "van 17 at charger.bay_1",
        "suspended charger.bay_1 04A1B2C3",
        "suspended charger.bay_1 04A1B2C3",
        "stopped charger.bay_1 04A1B2C3",
    ]


async def test_demand_response_phases_and_node_filter(make_hub: MakeHub) -> None:
    hub, calls = await recording(make_hub, """
        - id: dr
          mode: queued
          triggers:
            - {trigger: demand_response, event: [start, end, cancelled], node: [site]}
            - {trigger: demand_response, event: received, id: received}
          actions:
            - action: test.record
              data: {what: "{{ trigger.event }} {{ trigger.event_id }} {{ trigger.cap_kw }}"}
    """)  # fmt: skip
    event = {"event_id": "e1", "node": "site", "cap_kw": 40.0, "level": 2,
             "start": "2026-03-02T18:00:00+01:00", "end": "2026-03-02T19:00:00+01:00"}  # fmt: skip
    for phase in ("received", "start", "end"):
        hub.bus.fire("demand_response", {**event, "phase": phase})
    hub.bus.fire("demand_response", {**event, "phase": "start", "node": "panel_dc"})
    hub.bus.fire("demand_response", {**event, "event_id": "e2", "phase": "cancelled"})
    await hub.block_till_done()
    assert recorded(calls) == ["received e1 40.0", "start e1 40.0", "end e1 40.0",
                               "cancelled e2 40.0"]  # fmt: skip
