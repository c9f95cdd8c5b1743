"""The allocator's behaviour as scenario files (EVerest style): a site, sessions, loads, caps, and
what each charger must get and why. One test per file in `scenarios/`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from plugins.smart_charging.allocator import allocate

from .support import SCENARIOS, limit_violations, load_scenario, range_violations

FILES = sorted(SCENARIOS.glob("*.yaml"))


def test_there_are_enough_scenarios() -> None:
    assert len(FILES) >= 12


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path) -> None:
    sc = load_scenario(path)
    result = allocate(
        sc.site, sc.sessions, sc.non_ev_load, sc.caps_kw, hysteresis_a=sc.hysteresis_a
    )
    got = {a.charger: a for a in result}
    assert sorted(got) == sorted(sc.expect), "every session is expected, and only those"
    for charger, want in sc.expect.items():
        a = got[charger]
        assert a.current_a == pytest.approx(want["current_a"], abs=1e-6), (charger, a)
        assert want.get("binding", "") in a.binding, (charger, a.binding)
        for key in ("send", "dc", "power_kw"):
            if key in want:
                assert getattr(a, key) == pytest.approx(want[key]), (charger, key, a)
    assert limit_violations(sc.site, sc.sessions, sc.non_ev_load, sc.caps_kw, result) == []
    assert range_violations(sc.site, sc.sessions, result) == []

    # Told what it was given, every charger is left alone on the next round.
    told = {a.charger: a.current_a for a in result}
    again = [replace(d, last_command_a=told[d.charger]) if d.complying else d for d in sc.sessions]
    rerun = allocate(sc.site, again, sc.non_ev_load, sc.caps_kw, hysteresis_a=sc.hysteresis_a)
    assert [a.send for a in rerun] == [False] * len(rerun)
    assert [a.current_a for a in rerun] == [a.current_a for a in result]
