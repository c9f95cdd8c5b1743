"""Static tariffs through a real hub (inline rules, rule files, acnportal files), configuration
errors with file, line and key, and the template functions other plugins' templates will use."""

from __future__ import annotations

import functools
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hub.bootstrap import ConfigInvalid, create_hub
from hub.charging.signals import SignalStore
from hub.clock import SimClock
from hub.plugins import PluginStatus
from plugins.tariffs import template_cheapest_slots, template_price_at
from tests.tariffs.conftest import MakeHub
from tests.tariffs.payloads import ACNPORTAL_DIR
from tests.tariffs.support import start_hub

MONDAY = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)  # 11:30 in Berlin
SCE_TOU_EV_4 = ACNPORTAL_DIR / "sce_tou_ev_4_march_2019.json"

RULES = {
    "holidays": {"calendar": "de"},
    "periods": [
        {"name": "peak", "days": ["weekday"], "start": "12:00", "end": "18:00", "price": 0.40},
        {"name": "base", "price": 0.25, "export_price": 0.08},
    ],
    "demand_charges": [{"name": "peak_demand", "rate": 9.5, "basis": "daily", "periods": ["peak"]}],
}


def berlin(*tariffs: dict) -> dict:
    return {"hub": {"time_zone": "Europe/Berlin"}, "tariffs": list(tariffs)}


async def test_inline_rules_price_now_and_switch_at_noon(make_hub: MakeHub) -> None:
    hub = await make_hub(
        berlin(
            {"name": "grid_import", "source": {"tou": RULES}},
            {"name": "grid_export", "kind": "export", "source": {"tou": RULES}},
        ),
        clock := SimClock(MONDAY),
    )
    state = hub.states.get("tariff.grid_import")

    assert (state.state, state.unit) == (0.25, "EUR/kWh")
    assert state.attributes["next_change"] == "2026-03-02T11:00:00+00:00"
    (charge,) = state.attributes["demand_charges"]
    assert charge["rate"] == 9.5 and charge["basis"] == "daily" and charge["unit"] == "EUR/kW"
    assert charge["windows"][0] == ["2026-03-02T11:00:00+00:00", "2026-03-02T17:00:00+00:00"]
    assert hub.states.get("tariff.grid_export").state == 0.08
    assert hub.states.get("tariff.grid_export").attributes["demand_charges"] == []
    assert {"prices.grid_import", "prices.grid_export"} <= set(SignalStore.of(hub).names())

    await clock.advance_to(datetime(2026, 3, 2, 11, 0, tzinfo=UTC))
    assert hub.states.get("tariff.grid_import").state == 0.40
    # days later the rules have been re-expanded every midnight: still two days ahead
    await clock.advance_to(datetime(2026, 3, 6, 12, 0, tzinfo=UTC))
    slots = hub.states.get("tariff.grid_import").attributes["slots"]
    assert slots[-1]["end"] >= "2026-03-08T"


async def test_markup_vat_and_fixed_apply_to_rules_as_to_feeds(make_hub: MakeHub) -> None:
    tariff = {"name": "grid_import", "source": {"tou": RULES}, "markup": 0.01, "vat": 0.2}
    hub = await make_hub(berlin({**tariff, "fixed": 0.1}), SimClock(MONDAY))
    assert hub.states.get("tariff.grid_import").state == pytest.approx((0.25 + 0.01) * 1.2 + 0.1)


async def test_acnportal_file_in_los_angeles_with_its_demand_charge(make_hub: MakeHub) -> None:
    config = {
        "hub": {"time_zone": "America/Los_Angeles", "currency": "USD"},
        "tariffs": [{"name": "sce", "source": {"acnportal": str(SCE_TOU_EV_4)}}],
    }
    hub = await make_hub(config, SimClock(datetime(2019, 7, 1, 19, 30, tzinfo=UTC)))  # 12:30 PDT
    state = hub.states.get("tariff.sce")

    assert (state.state, state.unit) == (0.26668, "USD/kWh")
    assert state.attributes["source"].startswith("acnportal ")
    assert state.attributes["demand_charges"] == [
        {"name": "demand_1", "rate": 15.51, "basis": "monthly", "window": None, "currency": "USD",
         "unit": "USD/kW", "time_zone": "America/Los_Angeles", "windows": None}
    ]  # fmt: skip


async def test_a_rules_file_may_be_included_or_read_at_set_up(make_hub: MakeHub) -> None:
    rules_yaml = """\
        periods:
          - {start: "12:00", end: "18:00", price: 0.40}
          - price: 0.25
        """
    hub = await make_hub(berlin(), SimClock(MONDAY))  # only to get a config dir
    config_dir = hub.config_dir
    assert config_dir is not None
    (config_dir / "rules.yaml").write_text(textwrap.dedent(rules_yaml))
    (config_dir / "configuration.yaml").write_text(
        "hub: {time_zone: Europe/Berlin}\ntariffs:\n"
        "  - {name: a, source: {tou: !include rules.yaml}}\n"
        "  - {name: b, source: {tou_file: rules.yaml}}\n"
    )
    other = await start_hub(config_dir, SimClock(MONDAY))
    try:
        assert other.states.get("tariff.a").state == other.states.get("tariff.b").state == 0.25
    finally:
        await other.stop()


async def test_a_broken_rules_file_fails_the_plugin_naming_file_line_and_key(
    tmp_path: Path,
) -> None:
    (tmp_path / "rules.yaml").write_text("periods:\n  - start: '12:00'\n    price: cheap\n")
    (tmp_path / "configuration.yaml").write_text(
        "tariffs:\n  - {name: grid_import, source: {tou_file: rules.yaml}}\n"
    )
    hub = await start_hub(tmp_path, SimClock(MONDAY))
    try:
        record = hub.plugins.records["tariffs"]
        assert record.status is PluginStatus.FAILED
        assert "rules.yaml:3: periods.0.price: expected float" in (record.error or "")
        assert hub.states.get("tariff.grid_import") is None
    finally:
        await hub.stop()


BAD = [  # (what line 5 says, the key, the line named, the message)
    ("kind: imports", "tariffs.0.kind", 5, "value must be one of"),
    ("source: {nordpool: {currency: SEK}}", "tariffs.0.source.nordpool.area", 5, "required"),
    ("source: {energyzero: {}, awattar: {country: at}}", "tariffs.0.source", 5, "exactly one"),
    ("source: {tou: {periods: [{seasons: [summer], price: 1}]}}",
     "tariffs.0.source.tou.periods.0.seasons", 5, "unknown season"),
    ("vat: 19", "tariffs.0.vat", 5, "a fraction"),
    ("sourc: {energyzero: {}}", "tariffs.0.sourc", 5, "unknown key"),
    ("currency: SEK\n    source: {entsoe: {token: t, area: 10Y1001A1001A82H}}",
     "tariffs.0.currency", 5, "entsoe answers in EUR"),
    ("source: {entsoe: {token: t, area: DE}}", "tariffs.0.source.entsoe.area", 5, "EIC"),
    ("source: {json: {url: 'http://x', time_template: '{{ item.t }}', "
     "value_template: '{{ item.p '}}", "tariffs.0.source.json.value_template", 5,
     "template syntax error"),
    ("refresh: {every: soon}\n    source: {energyzero: {}}", "tariffs.0.refresh.every", 5,
     "duration"),
    ("refresh: {at: '13:15'}\n    source: {tou: {periods: [{price: 1}]}}", "tariffs.0.refresh", 5,
     "static rules need no refresh"),
]  # fmt: skip


@pytest.mark.parametrize(("entry", "key", "line", "message"), BAD)
def test_a_bad_configuration_is_refused_naming_file_line_and_key(
    tmp_path: Path, entry: str, key: str, line: int, message: str
) -> None:
    text = "hub:\n  time_zone: Europe/Berlin\ntariffs:\n  - name: grid_import\n    " + entry
    if "source" not in entry:
        text += "\n    source: {energyzero: {}}"
    (tmp_path / "configuration.yaml").write_text(text + "\n")

    with pytest.raises(ConfigInvalid) as caught:
        create_hub(tmp_path, clock=SimClock(MONDAY))
    found = [(e.file, e.line, e.key, e.message) for e in caught.value.errors]
    assert any(
        (f, n, k) == ("configuration.yaml", line, key) and message in m for f, n, k, m in found
    ), found


def test_two_tariffs_with_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text(
        "tariffs:\n  - {name: grid, source: {energyzero: {}}}\n"
        "  - {name: grid, source: {awattar: {country: at}}}\n"
    )
    with pytest.raises(ConfigInvalid, match=r"configuration.yaml:3: tariffs.1.name: a second"):
        create_hub(tmp_path, clock=SimClock(MONDAY))


async def test_template_functions_read_the_published_prices(make_hub: MakeHub) -> None:
    hub = await make_hub(
        berlin({"name": "grid_import", "source": {"tou": RULES}}), SimClock(MONDAY)
    )
    functions = hub.plugins.collect("hub_template_functions")

    assert functions == {
        "tariff_price": template_price_at,
        "cheapest_periods": template_cheapest_slots,
    }
    assert all(getattr(f, "pass_hub", False) for f in functions.values())
    assert template_price_at(hub, "tariff.grid_import") == 0.25
    assert template_price_at(hub, "tariff.grid_import", "2026-03-02T13:00:00") == 0.40  # local
    assert template_price_at(hub, "tariff.nothing") is None
    cheap = template_cheapest_slots(hub, "tariff.grid_import", hours=2, within_hours=12)
    # local times: the half hour left before noon, then 90 minutes after the peak
    assert [(f"{s['start']:%H:%M}", f"{s['end']:%H:%M}", s["price"]) for s in cheap] == [
        ("11:30", "12:00", 0.25),
        ("18:00", "19:30", 0.25),
    ]

    # what the automation engine will do: bind the hub to every function that asks for it
    env = ImmutableSandboxedEnvironment()
    env.globals.update({n: functools.partial(f, hub) for n, f in functions.items()})
    template = env.from_string(
        "{{ tariff_price('tariff.grid_import') }} "
        "{{ cheapest_periods('tariff.grid_import', 1)[0].price }}"
    )
    assert template.render() == "0.25 0.25"
