"""The allocator's command rules one at a time: hysteresis, compliance, under-draw over rounds,
and the clear errors a caller gets for inputs that cannot be right.
"""

from __future__ import annotations

import math

import pytest

from hub.charging.site import Site
from plugins.smart_charging.allocator import Cap, SessionDemand, allocate
from plugins.smart_charging.hysteresis import (
    UNDER_DRAW_AFTER_S,
    complies,
    draws_less,
    needs_send,
)

SITE = {
    "id": "depot",
    "max_current": 100,
    "circuits": [
        {
            "id": "c1",
            "max_current": 40,
            "chargers": [{"id": "a", "max_current": 32}, {"id": "b", "max_current": 32}],
        }
    ],
}


def test_a_command_is_sent_when_new_a_pause_a_resume_or_a_big_move() -> None:
    assert needs_send(16, None, 1.0)
    assert not needs_send(16.5, 16, 1.0)
    assert needs_send(17.5, 16, 1.0)
    assert needs_send(0, 6, 10.0) and needs_send(6, 0, 10.0)
    assert not needs_send(0, 0, 1.0)


def test_a_charger_complies_within_tolerance_and_after_a_grace_period() -> None:
    assert complies((16.8, 16.5, 16.9), 16, since_command_s=60)
    assert not complies((24, 24, 24), 16, since_command_s=60)
    assert complies((24, 24, 24), 16, since_command_s=3)  # still ramping down
    assert not complies((3, 0, 0), 0, since_command_s=60)  # told to pause
    assert complies(None, 16, since_command_s=60) and complies((30, 30, 30), None, 60)
    assert complies((16, 30, 30), 16, since_command_s=60, phases=1)  # a 1-phase car


def test_under_draw_holds_a_slow_car_and_gives_back_its_share_when_it_ramps_up() -> None:
    """Round by round, a minute apart, timed by the caller the way the plugin will do it."""
    site = Site.from_config(SITE)
    command, under_s, told_b = 20.0, 0.0, 20.0
    rounds = [(20.0, 20.0, 20.0), (8.0, 10.0, 30.0), (8.2, 10.0, 30.0), (9.8, 20.0, 20.0)]
    for measured, want_a, want_b in rounds:
        # The shortfall is timed against the command in force during the last minute.
        slow = draws_less((measured,) * 3, command)
        under_s = under_s + UNDER_DRAW_AFTER_S if slow else 0.0
        a = SessionDemand(
            "a", last_command_a=command, measured_a=(measured,) * 3, under_draw_s=under_s
        )
        b = SessionDemand("b", last_command_a=told_b)
        got = {x.charger: x for x in allocate(site, [a, b], {"depot": (0, 0, 0)})}
        assert (got["a"].current_a, got["b"].current_a) == (want_a, want_b), got
        if measured == 8.2:  # a little more draw, a little less for b: nothing worth a write
            assert not got["a"].send and not got["b"].send
        command, told_b = got["a"].current_a, got["b"].current_a


def test_a_charger_that_ignores_its_limit_is_counted_at_its_max_until_it_complies() -> None:
    site = Site.from_config(SITE)
    loads = {"depot": (0.0, 0.0, 0.0)}
    a = SessionDemand("a", last_command_a=20, measured_a=(31, 31, 31), complying=False)
    got = {x.charger: x for x in allocate(site, [a, SessionDemand("b")], loads)}
    assert (got["a"].current_a, got["a"].counted_a, got["a"].send) == (20, 32, False)
    assert got["b"].current_a == 8
    assert "not complying: counted at 32 A" in got["a"].binding
    complying = SessionDemand("a", last_command_a=20, measured_a=(20, 20, 20))
    got = {x.charger: x for x in allocate(site, [complying, SessionDemand("b")], loads)}
    assert got["a"].current_a == got["b"].current_a == 20


def test_a_dc_charger_is_commanded_in_kw() -> None:
    site = Site.from_config(
        {
            "id": "depot",
            "voltage": 230,
            "circuits": [{"id": "c", "chargers": [{"id": "hpc", "dc": True, "max_power_kw": 50}]}],
        }
    )
    (got,) = allocate(site, [SessionDemand("hpc", max_kw=30)], {})
    assert got.dc and got.phases == 3 and "vehicle max 30 kW" in got.binding
    assert got.power_kw == pytest.approx(got.current_a * 3 * 230 / 1000, abs=1e-3)
    assert got.power_kw <= 30 and got.power_kw == pytest.approx(30, abs=0.1)


@pytest.mark.parametrize(
    ("sessions", "loads", "caps", "error"),
    [
        ([SessionDemand("a"), SessionDemand("a")], {}, {}, "two sessions on charger 'a'"),
        ([SessionDemand("c1")], {}, {}, "not a charger"),
        ([SessionDemand("zz")], {}, {}, "no node 'zz'"),
        ([SessionDemand("a", max_a=math.nan)], {}, {}, "finite"),
        ([SessionDemand("a", phases=4)], {}, {}, "phases"),
        ([], {"a": (1, 1, 1)}, {}, "non_ev_load names charger 'a'"),
        ([], {"depot": (1, 1)}, {}, "three finite amps"),
        ([], {}, {"depot": Cap(-1)}, "finite number >= 0"),
    ],
)
def test_inputs_that_cannot_be_right_are_refused_clearly(
    sessions: list[SessionDemand], loads: dict, caps: dict, error: str
) -> None:
    with pytest.raises((ValueError, KeyError), match=error):
        allocate(Site.from_config(SITE), sessions, loads, caps)
