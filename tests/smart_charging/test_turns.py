"""Cars planned below their AC minimum take turns at it within the plan's total (turns.py)."""

from __future__ import annotations

import pytest

from plugins.smart_charging.turns import take_turns

MIN, MAX = 4.14, 11.0  # 6 A and 16 A on three phases of 230 V


def test_turns_keep_the_plans_total_and_go_to_the_most_owed_first() -> None:
    planned = {f"car{i}": 2.0 for i in range(6)}  # 12 kW planned, 2 kW each: below 4.14
    limits = {car: (MIN, MAX) for car in planned}
    owed = {"car4": 1.0, "car5": 0.8, "car0": 0.1}
    out = take_turns(planned, limits, {car: 5.0 for car in planned}, owed)
    charging = sorted(car for car, kw in out.items() if kw > 0)
    assert charging == ["car4", "car5"]  # two turns fit in 12 kW (8.28), the most owed
    # ...and the 3.72 kW the turns leave go to them too: the plan's total, no more, no less.
    assert all(out[car] >= MIN for car in charging)
    assert sum(out.values()) == pytest.approx(sum(planned.values()))


def test_cars_at_or_above_their_minimum_follow_the_plan() -> None:
    out = take_turns({"a": 7.5, "b": 0.0, "c": MIN}, {s: (MIN, MAX) for s in "abc"}, {}, {})
    assert out == {"a": 7.5, "b": 0.0, "c": pytest.approx(MIN)}


def test_a_car_that_cannot_wait_gets_what_it_needs_first() -> None:
    planned = {"late": 1.0, "early": 1.0}
    # 0.1 h of slack: it needs 11 x (1 - 0.1 / 0.25) = 6.6 kW now to finish at full power after,
    # and gets the 1 kW "early" was planned, which holds no turn for it: 7.6 kW.
    out = take_turns(planned, {s: (MIN, MAX) for s in planned}, {"late": 0.1, "early": 3.0}, {})
    assert out == {"late": pytest.approx(MAX * (1 - 0.1 / 0.25) + 1.0), "early": 0.0}
    # None left: full power. Still a quarter of slack, as a plan that fills it at full power in
    # its last slot leaves it: the plan, not more (the plan's total is the peak it paid for).
    out = take_turns(
        {"a": 5.0, "b": 11.0}, {s: (MIN, MAX) for s in "ab"}, {"a": 0.0, "b": 0.25}, {}
    )
    assert out == {"a": MAX, "b": 11.0}
    # A car a little short at its last minutes gets its minimum, not nothing: the plan's 0 kW
    # (rounding left it 20 Wh short) would leave it not ready.
    out = take_turns({"c": 0.0}, {"c": (MIN, MAX)}, {"c": 0.05}, {})
    assert out == {"c": pytest.approx(max(MIN, MAX * 0.8))}


def test_dc_has_no_minimum() -> None:
    out = take_turns({"dc": 0.7}, {"dc": (0.0, 50.0)}, {"dc": 2.0}, {})
    assert out == {"dc": 0.7}
