"""`evhub plan --policy automations:NAME`: the site run by a real hub (smart-charging engine and
automations) on simulated time, metered like the other policies; the command line end to end,
broken automation files, and a week of a depot's fleet under an evening cap.
"""

from __future__ import annotations

import csv
import json
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.charging.signals import Slot, TimeSeries
from hub.cli import main
from plugins.smart_charging import whatif
from plugins.smart_charging.cli import quick_site
from plugins.smart_charging.whatif import Scenario, SessionRequest, offline_optimum, simulate
from plugins.smart_charging.whatif_automations import AutomationsError, load, simulate_automations
from plugins.smart_charging.whatif_hub import PowerLog
from plugins.smart_charging.whatif_load import Meter, PolicyResult

BERLIN = ZoneInfo("Europe/Berlin")
FRIDAY = datetime(2026, 3, 6, tzinfo=BERLIN)
H = timedelta(hours=1)
CAP_KW = 20.0

EVENING_CAP = f"""
- id: evening_cap
  alias: Weekday evening cap
  mode: restart
  triggers:
    - trigger: time
      at: ["17:00", "21:00"]
    - trigger: hub
      event: start
  actions:
    - action: charging.set_site_limit
      data:
        limit_kw: "{{{{ {CAP_KW:g} if now().weekday() < 5 and 17 <= now().hour < 21 else none }}}}"
"""


def at(hours: float) -> datetime:
    return FRIDAY + hours * H


def evening_prices() -> TimeSeries:
    """Cheap from 17:00 to 21:00 (0.10), middling at night (0.25), dear by day (0.30)."""

    def price(hour: int) -> float:
        return 0.10 if 17 <= hour % 24 < 21 else 0.25 if hour % 24 >= 21 or hour % 24 < 7 else 0.30

    return TimeSeries(
        (Slot(at(h), at(h + 1), price(h)) for h in range(16, 55)), unit="currency/kWh"
    )


def two_nights() -> Scenario:
    """Four cars on four 11 kW chargers, Friday night and Saturday night, 30 kWh each by 07:00."""
    sessions = [
        SessionRequest(id=f"car{n} {day}", arrival=at(offset + 16), departure=at(offset + 31),
                       energy_kwh=30.0, max_kw=11.0, vehicle=f"car{n}")
        for day, offset in (("fri", 0), ("sat", 24))
        for n in range(4)
    ]  # fmt: skip
    site = quick_site(grid_kw=60, chargers=4, charger_kw=11)
    return Scenario(site=site, sessions=sessions, prices=evening_prices())


def rules(tmp_path: Path, text: str, name: str = "automations_evening.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def window(sc: Scenario, r: PolicyResult, day: float) -> list[float]:
    """Step kW (energy / step) from 17:00 to 21:00 on the day `day` hours after Friday 00:00."""
    return [
        kw
        for k, kw in enumerate(r.site_kw)
        if at(day + 17) <= sc.start + k * sc.step < at(day + 21)
    ]


def assert_consistent(sc: Scenario, r: PolicyResult) -> None:
    """What the report says adds up: energy, its cost at each step's price, the demand charge."""
    hours = sc.step / H
    delivered = sum(kw * hours for kw in r.site_kw)
    assert r.energy_delivered_kwh == pytest.approx(delivered, abs=1e-6)
    cost = sum(p * kw * hours for p, kw in zip(sc.step_prices, r.site_kw, strict=True))
    assert r.energy_cost == pytest.approx(cost, abs=1e-6)
    assert r.demand_charge == pytest.approx(sc.demand_charge * r.peak_kw[sc.site.root.id])
    assert r.total_cost == pytest.approx(r.energy_cost + r.demand_charge)


# --- the policy ---------------------------------------------------------------------------------
def test_a_weekday_evening_cap_changes_what_smart_would_do(tmp_path: Path) -> None:
    # Given four cars each night, and an evening that is the cheapest time to charge.
    sc = two_nights()
    visits = whatif.assign(sc)
    smart = simulate(sc, "smart", visits)
    # Smart charging alone puts the 120 kWh into the cheap evening: 30 kW or more on both days.
    assert max(window(sc, smart, 0)) > 29 and max(window(sc, smart, 24)) > 29
    # When the site runs the rule "at most 20 kW from 17:00 to 21:00 on weekdays"...
    rules(tmp_path, EVENING_CAP)  # automations:evening: automations_evening.yaml by the site
    capped, summary = simulate_automations(
        sc, load("automations:evening", tmp_path / "site.yaml"), BERLIN, visits
    )
    # ...then on Friday the site stays at 20 kW through the window and fills it: the rest of the
    # energy comes at night, at 0.25 instead of 0.10.
    friday = window(sc, capped, 0)
    assert max(friday) <= CAP_KW + 0.05
    assert sum(friday) * sc.step / H == pytest.approx(4 * CAP_KW, rel=0.02)
    # On Saturday the rule sets no cap: the cheap evening is used as smart uses it. Friday's
    # 40 kWh that did not fit went from 0.10 to 0.25.
    assert max(window(sc, capped, 24)) > 29
    assert capped.energy_cost == pytest.approx(smart.energy_cost + 40 * 0.15, rel=0.01)
    # Every car is still ready, no breaker is over, and the numbers add up.
    for r in (smart, capped):
        assert r.vehicles_ready == r.vehicles_total == 8
        assert r.energy_delivered_kwh == pytest.approx(r.energy_requested_kwh, abs=0.2)
        assert r.overloads == 0
        assert_consistent(sc, r)
    assert capped.policy == "automations:evening" and capped.plans > 0 and not capped.foresight
    assert summary.automations == 1 and summary.runs >= 4 and summary.errors == []


def test_no_rules_is_the_live_hub_smart_charging(tmp_path: Path) -> None:
    sc = two_nights()
    rules(tmp_path, "[]\n", "none.yaml")  # automations:none: none.yaml, for want of the other
    result, summary = simulate_automations(
        sc, load("automations:none", tmp_path / "site.yaml"), BERLIN
    )
    # The engine follows its plan: the cheap evenings, every car ready, nothing over.
    assert min(max(window(sc, result, 0)), max(window(sc, result, 24))) > 29
    assert result.vehicles_ready == 8 and result.overloads == 0
    assert result.energy_cost == pytest.approx(8 * 30 * 0.10, rel=0.02)
    assert_consistent(sc, result)
    assert summary.runs == 0 and summary.automations == 0


def test_the_power_log_meters_what_was_drawn_when() -> None:
    # Car 0 draws 10 kW from the step's start; at 5 minutes car 1 takes over from it.
    log, t0 = PowerLog(), at(0)
    log.set(t0, 0, 10.0)
    log.set(t0 + timedelta(minutes=5), 0, 0.0)
    log.set(t0 + timedelta(minutes=5), 1, 10.0)
    log.set(t0 + timedelta(minutes=15), 1, 0.0)  # the next step's
    draws, moments = log.take(t0, t0 + timedelta(minutes=15))
    assert draws[0] == pytest.approx((10.0, 10 / 12)) and draws[1] == pytest.approx((10.0, 10 / 6))
    # The breakers carried one car at a time, never both: that is what the overloads judge.
    assert moments == [{0: 10.0}, {1: 10.0}]
    draws, moments = log.take(t0 + timedelta(minutes=15), t0 + timedelta(minutes=30))
    assert draws == {} and moments == [{}]


def test_overloads_are_judged_at_each_moment_of_a_step() -> None:
    # A 16 A circuit with two 11 kW (16 A) chargers: one car at a time fits, two do not.
    site = quick_site(grid_kw=11.04, chargers=2, charger_kw=11.04)
    cars = [SessionRequest(id=f"car{n}", arrival=at(16), departure=at(17), energy_kwh=5,
                           max_kw=11.04) for n in range(2)]  # fmt: skip
    sc = Scenario(site=site, sessions=cars, prices=evening_prices())
    meter = Meter(sc, whatif.assign(sc))
    meter.record(0, {0: (11.04, 1.0), 1: (11.04, 1.0)}, [{0: 11.04}, {1: 11.04}])
    assert meter.overloads == 0
    meter.record(1, {0: (11.04, 1.0), 1: (11.04, 1.0)}, [{0: 11.04, 1: 11.04}])
    assert meter.overloads == 1 and meter.worst is not None and meter.worst.phase == "kW"


# --- the command line ---------------------------------------------------------------------------
def _csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    sc = two_nights()
    sessions = _csv(
        tmp_path / "sessions.csv",
        ["arrival", "departure", "energy_kwh", "max_kw", "vehicle_id"],
        [[s.arrival.isoformat(), s.departure.isoformat(), s.energy_kwh, s.max_kw, s.vehicle]
         for s in sc.sessions],
    )  # fmt: skip
    prices = _csv(
        tmp_path / "prices.csv",
        ["start", "end", "price_per_kwh"],
        [[s.start.isoformat(), s.end.isoformat(), s.value] for s in sc.prices],
    )
    return sessions, prices


def test_evhub_plan_with_an_automation_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions, prices = _inputs(tmp_path)
    rules(tmp_path, EVENING_CAP)  # automations:evening is automations_evening.yaml, here
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "plan.json"
    code = main(["plan", "--grid-kw", "60", "--chargers", "4", "--charger-kw", "11",
                 "--sessions", str(sessions), "--prices", str(prices), "--demand-charge", "2",
                 "--time-zone", "Europe/Berlin", "--policy", "smart,automations:evening",
                 "--json", str(out), "--chart", str(tmp_path / "chart")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "automations:evening" in printed.splitlines()[3]  # a column of the table
    assert "automations:evening: 1 automations" in printed and "local time Europe/Berlin" in printed
    data = json.loads(out.read_text())
    assert list(data) == ["smart", "automations:evening"]
    smart, capped = data["smart"], data["automations:evening"]
    assert set(capped) == set(smart)
    assert set(capped["overloads"]) == set(smart["overloads"]) and capped["mode"] == "online"
    assert capped["vehicles_ready"] == capped["vehicles_total"] == 8
    assert capped["energy_delivered_kwh"] == pytest.approx(240.0, abs=0.2)
    assert capped["demand_charge"] == pytest.approx(2 * capped["peak_kw"]["site"], abs=1e-3)
    assert capped["total_cost"] == pytest.approx(
        capped["energy_cost"] + capped["demand_charge"], abs=1e-3
    )
    assert capped["overloads"] == {"count": 0, "worst": None} and capped["plans"] > 0
    page = (tmp_path / "chart.html").read_text()
    assert "automations:evening" in page and "<script" not in page


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # An unknown trigger kind: the automation's file, the line and the key.
        (
            """
         - id: cap
           triggers: [{trigger: time, at: "17:00"}]
           actions: [{action: charging.set_site_limit, data: {limit_kw: 20}}]
         - id: broken
           triggers:
             - trigger: tme
               at: "17:00"
           actions: []
         """,
            "bad.yaml:6: automation.1.triggers.0.trigger: unknown trigger 'tme'",
        ),
        # Not YAML at all.
        ("- id: cap\n  triggers: [{trigger: time\n", "bad.yaml:3"),
    ],
)
def test_a_broken_automations_file_stops_the_plan_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    sessions, prices = _inputs(tmp_path)
    path = rules(tmp_path, text, "bad.yaml")
    code = main(["plan", "--grid-kw", "60", "--chargers", "4", "--charger-kw", "11",
                 "--sessions", str(sessions), "--prices", str(prices),
                 "--policy", f"smart,automations:{path}"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert f"{tmp_path}/{where}" in captured.err, captured.err


def test_an_automation_set_that_is_not_there(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    with pytest.raises(AutomationsError) as err:
        load("automations:night", site)
    assert "automations_night.yaml" in str(err.value) and f"{tmp_path}/night.yaml" in str(err.value)


# --- a week of a depot ----------------------------------------------------------------------------
def fleet_week_on_tou_ev_4() -> Scenario:
    from plugins.tariffs.acnportal import rules_from_acnportal
    from plugins.tariffs.tou import TouRules, expand
    from tests.smart_charging.test_whatif import LA, SHARED, depot, fleet_week

    doc = json.loads((SHARED / "data/tariffs/acnportal/sce_tou_ev_4_march_2019.json").read_text())
    tou = TouRules.from_config(rules_from_acnportal(doc))
    sessions = fleet_week(24)
    start, end = min(s.arrival for s in sessions) - H, max(s.departure for s in sessions) + H
    return Scenario(
        site=depot(24),
        sessions=sessions,
        prices=expand(tou, start, end, LA, step=timedelta(minutes=15)),
        demand_charge=max(c.rate for c in tou.demand_charges),
    )


def test_the_live_hub_follows_its_plans_through_a_fleet_week(tmp_path: Path) -> None:
    from tests.smart_charging.test_whatif import LA

    sc = fleet_week_on_tou_ev_4()
    visits = whatif.assign(sc)
    rules(tmp_path, "[]\n", "none.yaml")
    live, _ = simulate_automations(sc, load("automations:none", tmp_path / "site.yaml"), LA, visits)
    bound = offline_optimum(sc, visits)
    # Measured 10.7-15.1 % above the offline optimum across small changes to the turns (the
    # what-if smart policy: 5.1 %; one LP vertex or another moves it by points), 167-168 of 168
    # vans ready. It was 30-38 % with a 109-116 kW peak while chargers were held up to the 1 A
    # hysteresis below their plans and every car near its end went to full power at once.
    assert live.overloads == 0
    assert live.total_cost <= 1.2 * bound.total_cost
    assert live.peak_kw[sc.site.root.id] <= 1.2 * bound.peak_kw[sc.site.root.id]
    assert live.vehicles_ready >= 166
    assert live.energy_delivered_kwh >= live.energy_requested_kwh - 2.0


def test_a_week_of_fleet_sessions_under_an_evening_cap(tmp_path: Path) -> None:
    from tests.smart_charging.test_whatif import LA

    sc = fleet_week_on_tou_ev_4()
    cap = EVENING_CAP.replace(f"{{{{ {CAP_KW:g} if", "{{ 40 if")
    result, summary = simulate_automations(
        sc, load(f"automations:{rules(tmp_path, cap)}", None), LA
    )
    # 168 visits of 24 vans over seven days (about 10 s here): the weekday evenings stay at
    # 40 kW, no breaker is ever over, and nearly every van leaves ready.
    evenings = [
        kw
        for k, kw in enumerate(result.site_kw)
        if (t := (sc.start + k * sc.step).astimezone(LA)).weekday() < 5 and 17 <= t.hour < 21
    ]
    assert max(evenings) <= 40 + 0.05
    assert result.overloads == 0
    assert result.vehicles_ready >= 160 and result.vehicles_total == 168
    assert result.energy_delivered_kwh >= result.energy_requested_kwh - 5
    assert_consistent(sc, result)
    assert summary.errors == [] and summary.runs >= 7
