"""Templates: native results, state and time functions on the hub's clock, the sandbox's limits,
clear errors, and a tracker that re-renders only when something the template read changes."""

from __future__ import annotations

import logging
import time
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from hub.automation.templates import (
    Template,
    TemplateError,
    TemplateTracker,
    dynamic_template,
    is_template,
    pass_hub,
    read_state,
    render_complex,
    template_value,
)
from hub.charging.signals import SignalStore, Slot, TimeSeries
from hub.charging.site import Site
from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import PluginHost, hookimpl
from tests.conftest import SIM_START


def render(hub: Hub | None, source: str, **variables: Any) -> Any:
    return Template(source, hub).render(variables)


# --- results -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 2 + 3 }}", 5),
        ("{{ 2.5 * 2 }}", 5.0),
        ("{{ 'true' }}", True),
        ("{{ 1 > 2 }}", False),
        ("{{ [1, 2] + [3] }}", [1, 2, 3]),
        ("{{ {'a': 1} }}", {"a": 1}),
        ("{{ 'None' }}", None),
        ("  {{ 'padded' }}  ", "padded"),
        ("{{ '007' }}", "007"),  # numbers written unusually stay text, as in Home Assistant
        ("{{ '1e3' }}", "1e3"),
        ("{{ \"'quoted'\" }}", "'quoted'"),
        ("{{ 'a' }} {{ 'b' }}", "a b"),
        ("no template at all: 5", "no template at all: 5"),
        ("5", "5"),  # a static text is returned as it is, never parsed
    ],
)
def test_results_are_native_values_like_home_assistant(source: str, expected: Any) -> None:
    result = Template(source).render()
    assert result == expected and type(result) is type(expected)


def test_parse_result_false_gives_the_text() -> None:
    assert Template("{{ 2 + 3 }}").render(parse_result=False) == "5"
    assert Template("{{ x }} kW").render({"x": 11}) == "11 kW"


def test_is_template() -> None:
    assert is_template("{{ x }}") and is_template("{% if x %}y{% endif %}") and is_template("{# #}")
    assert not is_template("plain text") and not is_template("{ x }")


# --- states --------------------------------------------------------------------------------------
async def test_state_functions_read_the_state_machine(hub: Hub) -> None:
    hub.states.set("charger.bay_01", "charging", {"current_a": [16.0, 16.0, 16.0], "phases": 3})
    hub.states.set("sensor.site_power", 42.5, {"friendly_name": "Site power"}, unit="kW")
    hub.states.set("sensor.not_yet", None)

    assert render(hub, "{{ states('charger.bay_01') }}") == "charging"
    assert render(hub, "{{ states('sensor.site_power') | float + 0.5 }}") == 43.0
    assert render(hub, "{{ states('sensor.nothing') }}|{{ states('sensor.not_yet') }}") == (
        "unknown|unknown"
    )
    assert render(hub, "{{ 'charger.bay_01' | states }}") == "charging"
    assert render(hub, "{{ states.charger.bay_01.state }}") == "charging"
    assert render(hub, "{{ states.sensor.site_power.native }}") == 42.5
    assert render(hub, "{{ states.sensor.site_power.unit }}") == "kW"
    assert render(hub, "{{ states.sensor.site_power.name }}") == "Site power"
    assert render(hub, "{{ states.charger.bay_01.attributes.current_a[0] }}") == 16.0
    assert render(hub, "{{ states.charger.bay_01.last_changed == now() }}") is True
    assert render(hub, "{{ states['charger']['bay_01'].state }}") == "charging"
    assert render(hub, "{{ states.charger.missing is none }}") is True
    assert render(hub, "{{ state_attr('charger.bay_01', 'phases') }}") == 3
    assert render(hub, "{{ state_attr('charger.missing', 'phases') }}") is None
    assert render(hub, "{{ is_state('charger.bay_01', 'charging') }}") is True
    assert render(hub, "{{ is_state('charger.bay_01', ['available', 'charging']) }}") is True
    assert render(hub, "{{ is_state('sensor.site_power', 42.5) }}") is True
    assert render(hub, "{{ is_state('sensor.site_power', '42.5') }}") is True
    assert render(hub, "{{ 'charger.bay_01' is is_state('available') }}") is False
    assert render(hub, "{{ is_state_attr('charger.bay_01', 'phases', 3) }}") is True
    assert render(hub, "{{ is_state_attr('charger.bay_01', 'nope', None) }}") is False
    assert render(hub, "{{ has_value('charger.bay_01') }}") is True
    assert render(hub, "{{ has_value('sensor.not_yet') or has_value('sensor.nothing') }}") is False
    assert render(hub, "{{ states.charger | count }}") == 1
    assert render(hub, "{{ states | map(attribute='entity_id') | list }}") == [
        "charger.bay_01",
        "sensor.not_yet",
        "sensor.site_power",
    ]
    assert render(hub, "{{ states.charger | selectattr('state', 'eq', 'charging') | list }}")


async def test_render_with_info_records_exactly_what_was_read(hub: Hub) -> None:
    hub.states.set("sensor.a", 1)
    info = Template(
        "{{ states('sensor.a') }}{{ states.sensor.b }}{{ states.charger | list }}", hub
    ).render_with_info()
    assert info.exception is None
    assert info.entities == {"sensor.a", "sensor.b"}
    assert info.domains == {"charger"}
    assert not info.all_states and not info.has_time

    everything = Template("{{ states | count }}", hub).render_with_info()
    assert everything.all_states and everything.result == 1

    clocked = Template("{{ now().hour }}", hub).render_with_info()
    assert clocked.has_time and clocked.entities == frozenset()


# --- time: the hub's clock, never the wall clock -------------------------------------------------
async def test_now_and_utcnow_come_from_the_hub_clock(hub: Hub, clock: SimClock) -> None:
    await clock.advance(400 * 86400)  # more than a year from any wall clock near SIM_START
    expected = SIM_START + timedelta(days=400)
    assert render(hub, "{{ utcnow().isoformat() }}") == expected.isoformat()
    assert render(hub, "{{ now() == utcnow() }}") is True
    assert render(hub, "{{ utcnow().year }}") == expected.year
    assert render(hub, "{{ as_timestamp(now()) }}") == expected.timestamp()
    assert abs(expected.timestamp() - time.time()) > 30 * 86400  # so the wall clock would show


async def test_time_functions_use_the_hub_time_zone(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 7, 1, 10, 0, tzinfo=UTC))
    hub = Hub(tmp_path, clock=clock, config={"hub": {"time_zone": "Europe/Berlin"}})
    await hub.start()
    try:
        assert render(hub, "{{ now().hour }}") == 12  # CEST
        assert render(hub, "{{ utcnow().hour }}") == 10
        assert render(hub, "{{ today_at('18:30').isoformat() }}") == "2026-07-01T18:30:00+02:00"
        assert render(hub, "{{ now() < today_at('18:30') }}") is True
        assert render(hub, "{{ (now() + timedelta(hours=2)).hour }}") == 14
        assert render(hub, "{{ as_timestamp('2026-07-01T12:00:00') }}") == 1782900000.0
        assert render(hub, "{{ as_datetime('2026-07-01T12:00:00').utcoffset().seconds }}") == 7200
        assert render(hub, "{{ as_datetime(0).year }}") == 1970
        assert render(hub, "{{ as_datetime('garbage', default='none') }}") == "none"
        assert render(hub, "{{ as_local(utcnow()).hour }}") == 12
        assert render(hub, "{{ '2026-07-01T08:00:00+00:00' | as_local }}").startswith(
            "2026-07-01 10:00:00"
        )
        assert render(hub, "{{ relative_time(utcnow() - timedelta(hours=2, minutes=5)) }}") == (
            "2 hours"
        )
        assert render(hub, "{{ relative_time(utcnow() - timedelta(seconds=1)) }}") == "1 second"
        with pytest.raises(TemplateError, match="as_timestamp got an invalid input 'garbage'"):
            render(hub, "{{ as_timestamp('garbage') }}")
    finally:
        await hub.stop()


def test_numbers_are_forgiving_only_with_a_default() -> None:
    assert render(None, "{{ float('2.5') + int('3') }}") == 5.5
    assert render(None, "{{ '7.9' | int }}") == 7
    assert render(None, "{{ 'x' | float(-1) }}") == -1
    assert render(None, "{{ int('ff', base=16) }}") == 255
    assert render(
        None, "{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 2.1 | round(0, 'ceil') }}"
    ) == ("2.57|2|3")
    assert render(None, "{{ min(3, 1, 2) }} {{ max([3, 1, 2]) }} {{ abs(-4) }}") == "1 3 4"
    assert render(None, "{{ iif(1 > 2, 'yes', 'no') }} {{ none | iif('y', 'n', 'unknown') }}") == (
        "no unknown"
    )
    with pytest.raises(TemplateError, match="float got an invalid input 'kW' and no default"):
        render(None, "{{ 'kW' | float }}")


# --- undefined names and errors ------------------------------------------------------------------
def test_undefined_variables_render_empty_but_missing_attributes_are_errors() -> None:
    trigger = {"entity_id": "charger.bay_01"}
    assert render(None, "<{{ nobody_passed_this }}>") == "<>"
    assert render(None, "{{ trigger.nope | default('fallback') }}", trigger=trigger) == "fallback"
    assert render(None, "{{ trigger.nope is defined }}", trigger=trigger) is False
    assert render(None, "{% if trigger.nope %}y{% else %}n{% endif %}", trigger=trigger) == "n"
    with pytest.raises(TemplateError) as err:
        render(None, "line one\n{{ trigger.nope }}", trigger=trigger)
    assert "'dict object' has no attribute 'nope'" in str(err.value)
    assert "(line 2)" in str(err.value) and err.value.line == 2
    with pytest.raises(TemplateError, match="'x' is undefined"):
        render(None, "{{ x.y }}")
    with pytest.raises(TemplateError, match="has no attribute 'state'"):
        render(None, "{{ none.state }}")


def test_runtime_and_syntax_errors_say_what_and_where() -> None:
    with pytest.raises(TemplateError) as err:
        render(None, "a\nb\n{{ 1 / 0 }}")
    assert str(err.value) == (
        "ZeroDivisionError: division by zero in template 'a\\nb\\n{{ 1 / 0 }}' (line 3)"
    )
    broken = Template("line one\n{{ 1 + }}")
    with pytest.raises(TemplateError, match=r"unexpected 'end of print statement'.*\(line 2\)"):
        broken.ensure_valid()
    with pytest.raises(TemplateError, match="unexpected 'end of print statement'"):
        broken.render()
    with pytest.raises(TemplateError, match="Unexpected end of template"):
        Template("{% if x %}no end").ensure_valid()
    Template("{{ fine }}").ensure_valid()


async def test_state_functions_without_a_hub_say_so() -> None:
    with pytest.raises(TemplateError, match="reading states needs a running hub"):
        render(None, "{{ states('sensor.x') }}")
    with pytest.raises(TemplateError, match=r"now\(\) needs a running hub"):
        render(None, "{{ now() }}")


def test_validators_for_schemas() -> None:
    template = template_value("{{ 1 + 1 }}")
    assert isinstance(template, Template) and template.render() == 2
    assert template_value(5).render() == "5"
    assert template_value(template) is template
    with pytest.raises(vol.Invalid, match="invalid template: unexpected 'end of print"):
        template_value("{{ 1 + }}")
    with pytest.raises(vol.Invalid, match="expected a template text"):
        template_value(["a"])
    with pytest.raises(vol.Invalid, match="expected a template"):
        dynamic_template("just text")
    assert dynamic_template("{{ 3 }}").render() == 3
    schema = vol.Schema({"message": template_value})
    with pytest.raises(vol.MultipleInvalid, match=r"data\['message'\]"):
        schema({"message": "{% for %}"})


async def test_render_complex_walks_dicts_and_lists(hub: Hub) -> None:
    hub.states.set("sensor.power", 7.5)
    data = {
        "limit_kw": "{{ states('sensor.power') | float * 2 }}",
        "entity_id": "charger.bay_01",
        "nested": [Template("{{ who }}"), 4, {"{{ 'key' }}": "{{ who }} ok"}],
    }
    assert render_complex(data, {"who": "bob"}, hub) == {
        "limit_kw": 15.0,
        "entity_id": "charger.bay_01",
        "nested": ["bob", 4, {"key": "bob ok"}],
    }


# --- the sandbox ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "unsafe"),
        ("{% for i in range(100000) %}{% endfor %}", "range of 100000 items"),
        (
            "{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}",
            "more than 100000 loop iterations and calls",
        ),
        (
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
            "{{ f(40) }}",
            "more than 100000 loop iterations and calls",
        ),
        ("{{ 'x' * 10 ** 9 }}", "over the limit"),
        ("{{ [0] * 10 ** 8 }}", "over the limit"),
        ("{{ 2 ** 100000 }}", "exponent 100000 is over the limit"),
        ("{{ '%999999999d' % 1 }}", "over the limit"),
        ("{{ '{:>999999999}'.format(1) }}", "over the limit"),
        ("{{ '{:>{}}'.format(1, 999999999) }}", "over the limit"),
        ("{{ 'ab'.ljust(999999999) }}", "over the limit"),
        ("{{ 'x' | center(999999999) }}", "over the limit"),
        ("{{ [1] | batch(999999999, 0) | list }}", "over the limit"),
        ("{{ '%s' | format(1) }}{% for i in range(5000) %}{{ 'y' * 100 }}{% endfor %}", "output"),
        ("{% for x in [1] recursive %}{{ loop([x]) }}{% endfor %}", "recursive loops"),
        ("{% set d = {} %}{% do d.update(a=1) %}", "unsafe"),
    ],
)
def test_runaway_and_unsafe_templates_fail_fast_and_cleanly(source: str, message: str) -> None:
    # Bounded by counted steps and sizes, not by a timer: the same on a loaded machine.
    with pytest.raises(TemplateError, match=message):
        Template(source).render()


def test_harmless_uses_of_the_same_features_still_work() -> None:
    assert render(None, "{{ range(3) | list }}") == [0, 1, 2]
    assert render(None, "{{ '%.1f kW' % 7.25 }}") == "7.2 kW"
    assert render(None, "{{ '{} W'.format(300000) }}") == "300000 W"
    assert render(None, "{{ '-' * 3 }}") == "---"
    assert render(None, "{{ 2 ** 10 }}") == 1024
    assert render(None, "{{ 'a' | center(5) }}", parse_result=False) == "a"


# --- plugins add functions -----------------------------------------------------------------------
async def test_plugins_add_globals_filters_and_tests(
    tmp_path: Path, clock: SimClock, caplog: pytest.LogCaptureFixture
) -> None:
    @pass_hub
    def queue_length(hub: Hub | None, site: str) -> int:
        state = read_state(hub, f"sensor.{site}_queue")  # tracked like any state read
        return int(state.state) if state is not None else 0

    def register_all(register: Any) -> None:
        register("queue_length", queue_length)
        register("kwh", lambda wh: wh / 1000, kind="filter")
        register("even", lambda n: n % 2 == 0, "test")
        register("now", lambda: "not allowed")  # the core's functions cannot be replaced
        register("odd_kind", len, kind="macro")

    plugin = types.ModuleType("queue_plugin")
    plugin.hub_template_functions = hookimpl(register_all)  # type: ignore[attr-defined]
    host = PluginHost()
    host.register("queue_plugin", plugin)
    hub = Hub(tmp_path, clock=clock)
    hub.plugins, host.hub = host, hub
    with caplog.at_level(logging.WARNING):
        await hub.start()
        hub.states.set("sensor.depot_queue", 3)
        template = Template("{{ queue_length('depot') }} {{ 2500 | kwh }} {{ 4 is even }}", hub)
        info = template.render_with_info()
    assert info.result == "3 2.5 True"
    assert info.entities == {"sensor.depot_queue"}
    assert render(hub, "{{ now() == utcnow() }}") is True
    assert "template function not added: 'now' is provided by the core" in caplog.text
    assert "template function kind 'macro'" in caplog.text
    await hub.stop()


# --- tracking ------------------------------------------------------------------------------------
async def test_tracker_renders_again_only_when_an_entity_it_read_changes(hub: Hub) -> None:
    hub.states.set("binary_sensor.peak", "on")
    hub.states.set("sensor.peak_limit", 50)
    hub.states.set("sensor.base_limit", 120)
    hub.states.set("sensor.unrelated", 1)
    seen: list[tuple[Any, Any]] = []
    tracker = TemplateTracker(
        hub,
        Template(
            "{% if is_state('binary_sensor.peak', 'on') %}{{ states('sensor.peak_limit') }}"
            "{% else %}{{ states('sensor.base_limit') }}{% endif %}"
        ),
        None,
        lambda result, previous: seen.append((result, previous)),
    )
    tracker.start()
    assert (tracker.result, tracker.renders, seen) == (50, 1, [])

    hub.states.set("sensor.unrelated", 2)
    hub.states.set("sensor.base_limit", 110)  # not read while the peak is on
    assert tracker.renders == 1

    hub.states.set("sensor.peak_limit", 40)
    assert (tracker.renders, seen) == (2, [(40, 50)])

    hub.states.set("binary_sensor.peak", "off")  # now it reads the base limit instead
    assert (tracker.renders, seen[-1]) == (3, (110, 40))
    hub.states.set("sensor.peak_limit", 30)
    assert tracker.renders == 3
    hub.states.set("sensor.base_limit", 100)
    assert (tracker.renders, seen[-1]) == (4, (100, 110))

    hub.states.set("binary_sensor.peak", "off", {"reason": "attributes only"})
    assert tracker.renders == 5 and len(seen) == 3  # rendered, same result: no callback

    tracker.stop()
    hub.states.set("sensor.base_limit", 90)
    assert tracker.renders == 5
    assert hub.bus.listener_count().get("state_changed", 0) == 0


async def test_tracker_reports_errors_and_recovers(hub: Hub) -> None:
    hub.states.set("sensor.power", "12")
    seen: list[tuple[Any, Any]] = []
    tracker = TemplateTracker(
        hub, Template("{{ states('sensor.power') | float * 2 }}"), None,
        lambda result, previous: seen.append((result, previous)),
    )  # fmt: skip
    tracker.start()
    hub.states.set("sensor.power", "garbage")
    ((error, previous),) = seen
    assert isinstance(error, TemplateError) and "float got an invalid input" in str(error)
    assert previous == 24.0
    hub.states.set("sensor.power", "5")
    assert seen[-1] == (10.0, error)
    tracker.stop()


async def test_tracker_follows_a_domain_and_the_clock(hub: Hub, clock: SimClock) -> None:
    renders: list[Any] = []
    domain = TemplateTracker(
        hub, Template("{{ states.charger | count }}"), None, lambda r, p: renders.append(r)
    )
    domain.start()
    hub.states.set("sensor.other", 1)
    hub.states.set("charger.bay_01", "available")
    hub.states.set("charger.bay_02", "available")
    assert renders == [1, 2] and domain.renders == 3

    minutes = TemplateTracker(
        hub, Template("{{ now().minute }}"), None, lambda r, p: renders.append(("m", r))
    )
    minutes.start()
    await clock.advance(59)
    assert minutes.renders == 1
    await clock.advance(2)
    assert minutes.renders == 2 and renders[-1] == ("m", 1)
    minutes.stop()
    domain.stop()
    await clock.advance(600)
    assert minutes.renders == 2


async def test_tracker_callbacks_may_be_coroutines_and_may_fail(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[Any] = []

    async def later(result: Any, previous: Any) -> None:
        got.append(result)

    TemplateTracker(hub, Template("{{ states('sensor.a') }}"), None, later).start()
    broken = TemplateTracker(hub, Template("{{ states('sensor.a') }}"), None, lambda r, p: 1 / 0)
    broken.start()
    hub.states.set("sensor.a", "x")
    await hub.block_till_done()
    assert got == ["x"]
    assert "template tracker callback failed" in caplog.text


# --- prices and the site -------------------------------------------------------------------------
def _publish_prices(hub: Hub, start: datetime, prices: list[float]) -> None:
    slots = [
        Slot(start + timedelta(hours=i), start + timedelta(hours=i + 1), p)
        for i, p in enumerate(prices)
    ]
    SignalStore.of(hub).publish("prices.grid_import", TimeSeries(slots, unit="EUR/kWh"))


async def test_price_functions_read_a_published_signal(hub: Hub, clock: SimClock) -> None:
    _publish_prices(hub, SIM_START, [0.30, 0.10, 0.25, 0.05, 0.20, 0.08])
    assert render(hub, "{{ price_at(now(), 'prices.grid_import') }}") == 0.30
    assert render(hub, "{{ price_at('2026-03-02T09:30:00+00:00', 'prices.grid_import') }}") == 0.05
    assert render(hub, "{{ price_at('2026-03-03T09:30:00+00:00', 'prices.grid_import') }}") is None
    cheapest = "cheapest_slots(2, entity_id='prices.grid_import'"
    hours = " | map(attribute='hour') | unique | list }}"
    assert render(hub, "{{ " + cheapest + ")" + hours) == [9, 11]  # 0.05 and 0.08
    assert render(hub, "{{ " + cheapest + ") | count }}") == 8  # 15-minute slots
    assert render(hub, "{{ " + cheapest + ", contiguous=True)" + hours) == [9, 10]  # 0.05 + 0.20
    assert render(hub, "{{ " + cheapest + ", end='2026-03-02T09:00:00+00:00')" + hours) == [7, 8]
    assert render(hub, "{{ cheapest_slots(99, entity_id='prices.grid_import') | count }}") == 24
    seven = "{{ cheapest_slots(7, entity_id='prices.grid_import', contiguous=True) }}"
    assert render(hub, seven) == []
    await clock.advance(90 * 60)  # mid-slot: the slot in force counts from now
    end = "end='2026-03-02T09:00:00+00:00'"
    half_hour = "{{ cheapest_slots(0.5, " + end + ", entity_id='prices.grid_import') }}"
    assert Template(half_hour, hub).render(parse_result=False) == (
        "[datetime.datetime(2026, 3, 2, 7, 30, tzinfo=zoneinfo.ZoneInfo(key='UTC')), "
        "datetime.datetime(2026, 3, 2, 7, 45, tzinfo=zoneinfo.ZoneInfo(key='UTC'))]"
    )


@pytest.fixture
async def tariff_hub(tmp_path: Path) -> Any:
    from hub.bootstrap import create_hub  # the real tariffs plugin, loaded by its entry point

    rules = {
        "periods": [
            {"name": "peak", "days": ["weekday"], "start": "08:00", "end": "10:00", "price": 0.40},
            {"name": "base", "price": 0.20},
        ]
    }
    config = tmp_path / "config"
    config.mkdir()
    (config / "configuration.yaml").write_text(
        "hub: {time_zone: UTC}\n"
        f"tariffs: [{{name: grid_import, source: {{tou: {rules}}}}}]\n".replace("'", "")
    )
    hub = create_hub(config, clock=SimClock(start=SIM_START))
    await hub.start()
    yield hub
    await hub.stop()


async def test_price_at_and_cheapest_slots_on_a_real_tariff_entity(tariff_hub: Hub) -> None:
    hub = tariff_hub
    assert render(hub, "{{ price_at(now()) }}") == 0.20
    assert render(hub, "{{ price_at() }}") == 0.20
    assert render(hub, "{{ price_at('2026-03-02T09:00:00+00:00') }}") == 0.40
    assert render(hub, "{{ price_at('tariff.grid_import', '2026-03-02T09:00:00+00:00') }}") == 0.4
    assert render(hub, "{{ '2026-03-02T08:15:00+00:00' | price_at }}") == 0.40
    cheapest = "cheapest_slots(3, end='2026-03-02T12:00:00+00:00')"
    # 15-minute slots from the tariff entity; the peak (08-10) avoided, ties go to the earliest
    assert render(hub, "{{ " + cheapest + " | count }}") == 12
    assert render(hub, "{{ " + cheapest + " | map(attribute='hour') | unique | list }}") == [
        6,
        7,
        10,
    ]
    info = Template("{{ price_at(now()) }}", hub).render_with_info()
    assert "tariff.grid_import" in info.entities and "prices.grid_import" in info.signals


async def test_site_headroom_from_ratings_caps_and_readings(hub: Hub) -> None:
    hub.site = Site.from_config(
        {
            "max_current": 100,
            "max_power_kw": 60,
            "meters": {"grid": "sensor.grid_power"},
            "panels": [
                {
                    "id": "panel_a",
                    "max_current": 40,
                    "circuits": [
                        {
                            "id": "c1",
                            "max_current": 32,
                            "chargers": [
                                {"entity": "charger.bay_01", "phases": 3, "max_current": 32},
                                {"entity": "charger.bay_02", "phases": 1, "phase_rotation": "L2"},
                            ],
                        }
                    ],
                }
            ],
        }
    )
    hub.states.set("charger.bay_01", "charging", {"current_a": [16, 16, 16], "power_w": 11040})
    hub.states.set("charger.bay_02", "charging", {"current_a": [10], "power_w": 2300})
    hub.states.set("sensor.grid_power", 30.0, {"current_a": [40, 50, 40]}, unit="kW")

    # c1: 32 A rated, L2 carries 16 + 10 A -> 6 A left; balanced three-phase 6 A x 3 x 230 V
    assert render(hub, "{{ site_headroom('c1', unit='A') }}") == 6.0
    assert render(hub, "{{ site_headroom('c1') }}") == 4.14
    # the site: 100 A per phase, grid meter says 50 A on L2; 60 kW rating minus 30 kW measured
    assert render(hub, "{{ site_headroom(unit='A') }}") == 50.0
    assert render(hub, "{{ site_headroom() }}") == 30.0
    SignalStore.of(hub).publish(
        "caps.site",
        TimeSeries([Slot(SIM_START, SIM_START + timedelta(hours=1), 40.0)], unit="kW"),
    )
    info = Template("{{ site_headroom() }}", hub).render_with_info()
    assert info.result == 10.0  # a DR cap of 40 kW with 30 kW drawn
    # it looked for the engine's node state first (absent here), then read the meter
    assert info.entities == {"sensor.grid_power", "site_node.site"}
    assert "caps.site" in info.signals
    info = Template("{{ site_headroom('c1') }}", hub).render_with_info()
    assert info.result == 4.14
    assert info.entities == {
        "site_node.c1", "site_node.panel_a", "site_node.site",
        "sensor.grid_power", "charger.bay_01", "charger.bay_02",
    }  # fmt: skip
    with pytest.raises(TemplateError, match="has no node 'nowhere'"):
        render(hub, "{{ site_headroom('nowhere') }}")


async def test_site_headroom_takes_the_engines_node_states_when_published(hub: Hub) -> None:
    hub.site = Site.from_config(
        {"id": "depot", "max_current": 100,
         "circuits": [{"id": "c1", "max_current": 32,
                       "chargers": [{"entity": "charger.bay_01", "phases": 3}]}]}
    )  # fmt: skip
    # what plugins/smart_charging publishes: caps set by services are only known there
    hub.states.set("site_node.depot", 20.0, {"headroom_a": [70, 60, 70], "available_kw": 12.5})
    hub.states.set("site_node.c1", 8.0, {"headroom_a": [20, 20, 20], "available_kw": 9.0})
    assert render(hub, "{{ site_headroom('c1') }}") == 9.0
    assert render(hub, "{{ site_headroom('c1', unit='A') }}") == 20
    assert render(hub, "{{ site_headroom(unit='A') }}") == 60
    info = Template("{{ site_headroom('c1') }}", hub).render_with_info()
    assert info.entities == {"site_node.c1", "site_node.depot"}


async def test_the_documented_charge_now_idiom(hub: Hub, clock: SimClock) -> None:
    idiom = (
        "{% set s = cheapest_slots(1, entity_id='prices.grid_import') %}{{ s and s[0] <= now() }}"
    )
    _publish_prices(hub, SIM_START, [0.30, 0.05, 0.30])
    assert render(hub, idiom) is False  # the cheap hour is the next one
    await clock.advance(3600)
    assert render(hub, idiom) is True
    await clock.advance(3 * 3600)
    assert render(hub, idiom) == []  # no prices left: an empty list, falsy
