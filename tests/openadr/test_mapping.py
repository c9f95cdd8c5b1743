"""OpenADR events (as openleadr parses them) become kW caps: SIMPLE levels through the table,
LOAD_DISPATCH / LOAD_CONTROL in kW or relative to the node's limit, with ramp-up and lead-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.charging.signals import Slot
from plugins.openadr.mapping import DrInputError, MappingConf, from_openadr, parse_rule
from plugins.openadr.model import DrEvent, Opt, Status, node_caps

T0 = datetime(2026, 7, 1, 15, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
CONF = MappingConf(
    node="site",
    resources={"row_a": "panel_a"},
    lead=timedelta(seconds=10),
    limit_kw=lambda node: {"site": 100.0, "panel_a": 40.0}.get(node),
)


def event(*signals: dict[str, Any], ramp: timedelta | None = None, **extra: Any) -> dict:
    period = {"dtstart": T0, "duration": 30 * MIN}
    if ramp is not None:
        period["ramp_up_period"] = ramp
    return {
        "event_descriptor": {"event_id": "ev1", "modification_number": 0, "event_status": "far",
                             "market_context": "oadr://utility/peak", "priority": 1},
        "active_period": period,
        "event_signals": list(signals),
        "targets": [{"ven_id": "v1"}],
        "response_required": "always",
        **extra,
    }  # fmt: skip


def signal(name: str, kind: str, *payloads: float, **extra: Any) -> dict[str, Any]:
    intervals = [
        {"dtstart": T0 + i * 10 * MIN, "duration": 10 * MIN, "signal_payload": p, "uid": i}
        for i, p in enumerate(payloads)
    ]
    return {"signal_name": name, "signal_type": kind, "intervals": intervals, **extra}


def caps(ev: DrEvent) -> list[tuple[int, int, float]]:
    """(start, end) in seconds from T0, and the kW, of each slot."""
    secs = lambda t: int((t - T0).total_seconds())  # noqa: E731
    return [(secs(s.start), secs(s.end), round(s.value, 3)) for s in ev.slots]


def test_simple_levels_follow_the_table_with_a_lead_in() -> None:
    ev = from_openadr(event(signal("SIMPLE", "level", 1, 2, 3)), CONF, T0 - MIN)
    assert caps(ev) == [(-10, 0, 70.0), (0, 600, 70.0), (600, 1200, 40.0), (1200, 1800, 0.0)]
    assert ev.level == 3 and ev.cap_kw == 0.0 and ev.node == "site"
    assert (ev.start, ev.end, ev.status) == (T0, T0 + 30 * MIN, Status.PENDING)
    assert ev.market_context == "oadr://utility/peak" and ev.priority == 1


def test_level_zero_is_no_cap_and_a_level_above_the_table_takes_the_highest() -> None:
    ev = from_openadr(event(signal("SIMPLE", "level", 0, 5)), CONF, T0)
    assert caps(ev) == [(600, 1200, 0.0)]


def test_load_dispatch_setpoint_in_kw_w_and_mw() -> None:
    kw = signal("LOAD_DISPATCH", "setpoint", 25, measurement={"unit": "W", "scale": "k"})
    watts = signal("LOAD_DISPATCH", "setpoint", 30000, measurement={"unit": "W", "scale": "none"})
    bare = signal("LOAD_DISPATCH", "setpoint", 35)  # no itemBase: kW
    assert caps(from_openadr(event(kw), CONF, T0))[1] == (0, 600, 25.0)
    assert caps(from_openadr(event(watts), CONF, T0))[1] == (0, 600, 30.0)
    assert caps(from_openadr(event(bare), CONF, T0))[1] == (0, 600, 35.0)
    mw = signal("LOAD_DISPATCH", "setpoint", 0.02, measurement={"unit": "W", "scale": "M"})
    assert caps(from_openadr(event(mw), CONF, T0))[1] == (0, 600, 20.0)


def test_relative_signals_use_the_node_limit() -> None:
    delta = signal("LOAD_DISPATCH", "delta", -30)
    capacity = signal("LOAD_CONTROL", "x-loadControlCapacity", 0.25)
    offset = signal("LOAD_CONTROL", "x-loadControlPercentOffset", -40)
    setpoint = signal("LOAD_CONTROL", "x-loadControlSetpoint", 12)
    assert caps(from_openadr(event(delta), CONF, T0))[1][2] == 70.0
    assert caps(from_openadr(event(capacity), CONF, T0))[1][2] == 25.0
    assert caps(from_openadr(event(offset), CONF, T0))[1][2] == 60.0
    assert caps(from_openadr(event(setpoint), CONF, T0))[1][2] == 12.0


def test_several_signals_in_one_event_take_the_lower_cap() -> None:
    ev = from_openadr(
        event(signal("SIMPLE", "level", 1, 1), signal("LOAD_DISPATCH", "setpoint", 90, 50)),
        CONF, T0,
    )  # fmt: skip
    assert caps(ev)[1:] == [(0, 600, 70.0), (600, 1200, 50.0)]
    assert ev.signal_name == "SIMPLE+LOAD_DISPATCH"


def test_ramp_up_steps_down_from_the_node_limit() -> None:
    ev = from_openadr(event(signal("SIMPLE", "level", 2), ramp=4 * MIN + timedelta(seconds=10)),
                      CONF, T0 - 10 * MIN)  # fmt: skip
    assert caps(ev) == [(-250, -190, 85.0), (-190, -130, 70.0), (-130, -70, 55.0),
                        (-70, -10, 40.0), (-10, 0, 40.0), (0, 600, 40.0)]  # fmt: skip


def test_a_resource_target_names_the_node() -> None:
    ev = from_openadr(
        event(signal("SIMPLE", "level", 1), targets=[{"resource_id": "row_a"}]), CONF, T0
    )
    assert ev.node == "panel_a" and ev.cap_kw == pytest.approx(28.0)


def test_open_ended_and_cancelled_events() -> None:
    ev = event(signal("SIMPLE", "level", 1))
    ev["active_period"]["duration"] = timedelta(0)
    ev["event_signals"][0]["intervals"][0]["duration"] = timedelta(0)
    parsed = from_openadr(ev, CONF, T0)
    assert parsed.end == T0 + timedelta(hours=24) and caps(parsed)[-1] == (0, 86400, 70.0)
    ev["event_descriptor"]["event_status"] = "cancelled"
    assert from_openadr(ev, CONF, T0).status is Status.CANCELLED


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("active_period"), "missing active_period"),
        (lambda e: e["active_period"].update(dtstart="tomorrow"), "timezone-aware"),
        (lambda e: e.update(event_signals=[]), "no signals"),
        (lambda e: e["event_signals"][0].update(signal_name="x-vendor"), "unsupported signal"),
        (lambda e: e["event_signals"][0]["intervals"][0].update(signal_payload="high"),
         "expected a number"),
        (lambda e: e["event_signals"][0].update(signal_name="LOAD_CONTROL",
                                                signal_type="x-loadControlCapacity"),
         "fraction 0..1"),
        (lambda e: e["event_signals"][0].update(signal_name="ELECTRICITY_PRICE"),
         "no load signal"),
        (lambda e: e["event_signals"][0].update(signal_name="LOAD_DISPATCH", measurement={
            "unit": "degF", "scale": "none"}), "power unit"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(mutate: Any, message: str) -> None:
    ev = event(signal("SIMPLE", "level", 2))
    mutate(ev)
    with pytest.raises(DrInputError, match=message):
        from_openadr(ev, CONF, T0)


def test_percent_of_an_unknown_limit_is_an_error() -> None:
    conf = MappingConf(node="site")
    with pytest.raises(DrInputError, match="limit"):
        from_openadr(event(signal("SIMPLE", "level", 1)), conf, T0)


def test_rules() -> None:
    assert parse_rule("70%").percent == 70 and parse_rule("50 kW").kw == 50
    assert parse_rule(12).kw == 12 and parse_rule("none").percent is None
    for bad in ("150%", "-1", "lots", True):
        with pytest.raises(ValueError):
            parse_rule(bad)


def test_overlapping_events_take_the_minimum_and_opted_out_ones_none() -> None:
    def ev(event_id: str, a: int, b: int, kw: float, opt: Opt = Opt.IN) -> DrEvent:
        slot = Slot(T0 + a * MIN, T0 + b * MIN, kw)
        return DrEvent(event_id, "openadr", "site", "SIMPLE", "level", slot.start, slot.end,
                       (slot,), opt=opt)  # fmt: skip

    series = node_caps([ev("a", 0, 30, 50), ev("b", 10, 20, 20), ev("c", 0, 60, 1, Opt.OUT)])
    assert [(s.start, s.end, s.value) for s in series["site"]] == [
        (T0, T0 + 10 * MIN, 50),
        (T0 + 10 * MIN, T0 + 20 * MIN, 20),
        (T0 + 20 * MIN, T0 + 30 * MIN, 50),
    ]
