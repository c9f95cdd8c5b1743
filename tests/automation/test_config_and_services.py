"""Loading automations: errors with file, line and key (check-config) while the hub runs the good
ones; both Home Assistant spellings; reload without a restart; turn_on/off/toggle/trigger; on/off
kept across restarts; kinds that plugins add."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from hub.automation import get_traces
from hub.automation.registry import ActionType, ConditionType, TriggerType
from hub.bootstrap import check_config, create_hub, load_plugins
from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import PluginHost, hookimpl
from tests.automation.conftest import MakeHub
from tests.automation.support import Recorder, record, write_config

ROOT = Path(__file__).resolve().parents[2]

BROKEN = """
- id: good
  alias: Good one
  triggers: [{trigger: event, event_type: go}]
  actions: [{action: test.record, data: {who: good}}]
- id: bad
  alias: Broken one
  trigger:
    - platform: numeric_state
      entity_id: sensor.x
      abve: 5
  action:
    - delay: "{{ 5 "
- alias: No id here
  trigger: {platform: event, event_type: go}
  action: {service: test.record, data: {who: "no id"}}
"""


@pytest.mark.parametrize("folder", ["config", "config/demo"])
def test_the_example_automations_pass_check_config(folder: str) -> None:
    config, _, errors = check_config(ROOT / folder, load_plugins())
    assert [str(e) for e in errors] == []
    assert len(config["automation"]) >= 4


def test_check_config_names_file_line_and_key(tmp_path: Path) -> None:
    write_config(tmp_path, BROKEN)
    _, _, errors = check_config(tmp_path, PluginHost())
    assert [str(e) for e in errors] == [
        "automations.yaml:10: automation.1.trigger.0.abve: unknown key 'abve'",
        "automations.yaml:12: automation.1.action.0.delay: invalid template: unexpected end of "
        "template, expected 'end of print statement'. in template '{{ 5 ' (line 1)",
    ]


async def test_a_broken_automation_is_unavailable_and_the_others_run(
    tmp_path: Path, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    write_config(tmp_path, BROKEN)
    hub = create_hub(tmp_path, clock=clock, host=PluginHost())  # starts despite the broken one
    calls = record(hub)
    await hub.start()
    try:
        broken = hub.states.get("automation.broken_one")
        assert broken.state == "unavailable"
        assert broken.attributes["errors"][0].startswith("automations.yaml:10: automation.1.")
        assert "automation not loaded: automations.yaml:10: automation.1.trigger.0.abve" in (
            caplog.text
        )
        assert hub.states.get("automation.good_one").state == "on"
        assert hub.states.get("automation.no_id_here").attributes["id"] is None
        hub.bus.fire("go")
        await hub.block_till_done()
        assert sorted(d["who"] for d in calls.data) == ["good", "no id"]
    finally:
        await hub.stop()


async def reload_with(hub: Hub, automations: str) -> None:
    assert hub.config_dir is not None
    (hub.config_dir / "automations.yaml").write_text(textwrap.dedent(automations).lstrip())
    await hub.services.call("automation", "reload")


async def test_reload_replaces_only_what_changed(make_hub: MakeHub, clock: SimClock) -> None:
    holder: dict[str, Recorder] = {}

    async def setup(hub: Hub) -> None:
        holder["r"] = record(hub)

    first = """
        - id: waits
          triggers: [{trigger: event, event_type: go}]
          actions:
            - delay: 60
            - {action: test.record, data: {who: waits}}
        - id: changes
          triggers: [{trigger: event, event_type: go}]
          actions: [{action: test.record, data: {who: old}}]
        - id: goes_away
          triggers: [{trigger: event, event_type: go}]
          actions: [{action: test.record, data: {who: gone}}]
    """
    hub = await make_hub(first, setup=setup)
    calls = holder["r"]
    hub.bus.fire("go")
    await clock.advance(10)
    await reload_with(hub, """
        - id: waits
          triggers: [{trigger: event, event_type: go}]
          actions:
            - delay: 60
            - {action: test.record, data: {who: waits}}
        - id: changes
          triggers: [{trigger: event, event_type: go}]
          actions: [{action: test.record, data: {who: new}}]
    """)  # fmt: skip
    await clock.advance(60)  # the unchanged automation's run went on through the reload
    assert hub.states.get("automation.goes_away") is None
    calls.calls.clear()
    hub.bus.fire("go")
    await clock.advance(61)
    assert sorted(d["who"] for d in calls.data) == ["new", "waits"]
    assert len(get_traces(hub, "waits")) == 2
    with pytest.raises(
        RuntimeError, match=r"not reloaded: automations.yaml:2: automation: while parsing"
    ):
        await reload_with(hub, "- id: [unclosed\n")
    assert hub.states.get("automation.changes").state == "on"  # a bad file changes nothing


async def test_turn_off_on_toggle_and_trigger_services(make_hub: MakeHub, clock: SimClock) -> None:
    holder: dict[str, Recorder] = {}

    async def setup(hub: Hub) -> None:
        holder["r"] = record(hub)

    hub = await make_hub("""
        - id: guarded
          triggers: [{trigger: event, event_type: go}]
          conditions: "{{ is_state('input_boolean.allowed', 'on') }}"
          actions:
            - delay: 30
            - action: test.record
              data: {by: "{{ trigger.platform }}", v: "{{ extra | default('-') }}"}
    """, setup=setup)  # fmt: skip
    calls, entity = holder["r"], "automation.guarded"
    hub.states.set("input_boolean.allowed", "on")
    hub.bus.fire("go")
    await clock.advance(10)
    await hub.services.call("automation", "turn_off", {"entity_id": entity})  # stops the run
    await clock.advance(60)
    hub.bus.fire("go")
    await clock.advance(60)
    assert calls.data == []
    assert hub.states.get(entity).state == "off"
    await hub.services.call("automation", "toggle", {"entity_id": entity})
    hub.states.set("input_boolean.allowed", "off")
    await hub.services.call(
        "automation", "trigger", {"entity_id": entity, "variables": {"extra": 7}}
    )  # conditions skipped by default
    await clock.advance(31)
    await hub.services.call(
        "automation", "trigger", {"entity_id": [entity], "skip_condition": False}
    )
    await clock.advance(31)
    assert calls.data == [{"by": None, "v": 7}]
    state = hub.states.get(entity)
    assert state.state == "on" and state.attributes["last_triggered"] == "2026-03-02T06:02:10+00:00"
    with pytest.raises(LookupError, match=r"automation\.nope is not an automation"):
        await hub.services.call("automation", "turn_on", {"entity_id": "automation.nope"})


async def test_on_off_survives_a_restart_unless_initial_state_says(
    tmp_path: Path, clock: SimClock
) -> None:
    write_config(tmp_path, """
        - {id: a, triggers: [], actions: []}
        - {id: b, initial_state: true, triggers: [], actions: []}
    """)  # fmt: skip
    for turn in range(2):
        hub = create_hub(tmp_path, clock=clock, host=PluginHost())
        await hub.start()
        states = [hub.states.get(f"automation.{x}").state for x in ("a", "b")]
        if turn == 0:
            assert states == ["on", "on"]
            for x in ("a", "b"):
                await hub.services.call("automation", "turn_off", {"entity_id": f"automation.{x}"})
        else:
            assert states == ["off", "on"]
        await hub.stop()


# --- kinds a plugin adds ----------------------------------------------------------------------
class FleetPlugin:
    """A plugin adding a trigger (`vehicle_arrived`), a condition and an action."""

    @hookimpl
    def hub_register_triggers(self, register: Any) -> None:
        def attach(info: Any, config: Mapping[str, Any], fire: Any) -> Any:
            def heard(event: Any) -> None:
                if event.data["vehicle"] in config["vehicles"]:
                    fire({"vehicle": event.data["vehicle"]}, event.context)

            return info.hub.bus.listen("fleet_arrival", heard)

        register("vehicle_arrived", TriggerType(vol.Schema({"vehicles": [str]}), attach))

    @hookimpl
    def hub_register_conditions(self, register: Any) -> None:
        # The bare factory form docs/plugins.md describes: factory(hub, config) -> checker.
        register(
            "depot_open",
            lambda hub, config: lambda variables: variables["trigger"]["vehicle"] != "van_9",
        )

    @hookimpl
    def hub_register_actions(self, register: Any) -> None:
        async def run(step: Any, config: Mapping[str, Any]) -> Any:
            data = {"wash": step.render(config["wash_vehicle"])}
            await step.hub.services.call("test", "record", data, step.child_context())
            return {"washed": True}

        register("wash_vehicle", ActionType(vol.Schema({"wash_vehicle": str}), run))


async def test_plugins_add_trigger_condition_and_action_kinds(
    tmp_path: Path, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    write_config(tmp_path, """
        - id: wash
          triggers: [{trigger: vehicle_arrived, vehicles: [van_17, van_9]}]
          conditions: [{condition: depot_open}]
          actions: [{wash_vehicle: "{{ trigger.vehicle }}"}]
    """)  # fmt: skip
    host = PluginHost()
    host.register("fleet", FleetPlugin())
    assert check_config(tmp_path, host)[2] == []  # check-config knows the plugin's kinds
    hub = create_hub(tmp_path, clock=clock, host=host)
    calls = record(hub)
    await hub.start()
    try:
        for vehicle in ("van_17", "van_9", "van_3"):
            hub.bus.fire("fleet_arrival", {"vehicle": vehicle})
        await hub.block_till_done()
        assert calls.data == [{"wash": "van_17"}]
        assert get_traces(hub, "wash")[-1]["steps"][0]["result"] == {"washed": True}
    finally:
        await hub.stop()
    assert ConditionType  # the typed form of a condition kind is exported too
