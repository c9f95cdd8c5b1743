"""The what-if planner (`evhub plan`): hand-checked cases, breaker overloads, online vs foresight,
the command line end to end, and a realistic week against an independent offline LP optimum.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.charging.signals import Slot, TimeSeries
from hub.charging.site import Site
from hub.cli import main
from plugins.smart_charging import whatif
from plugins.smart_charging.cli import quick_site
from plugins.smart_charging.whatif import Scenario, SessionRequest, offline_optimum, simulate
from plugins.smart_charging.whatif_load import Meter, Room, take_turns

SHARED = Path(__file__).resolve().parents[3] / "shared"
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=ZoneInfo("Europe/Berlin"))
H = timedelta(hours=1)


def prices(*hourly: float, start: datetime = T0) -> TimeSeries:
    return TimeSeries(Slot(start + i * H, start + (i + 1) * H, p) for i, p in enumerate(hourly))


def session(name: str, arrive: float, leave: float, kwh: float, kw: float = 11.0) -> SessionRequest:
    return SessionRequest(
        id=name, arrival=T0 + arrive * H, departure=T0 + leave * H, energy_kwh=kwh, max_kw=kw
    )


def one_circuit(circuit_a: float, chargers: int, charger_a: float, grid_kw: float = 1000) -> Site:
    return Site.from_config(
        {
            "id": "site",
            "max_power_kw": grid_kw,
            "circuits": [
                {
                    "id": "c1",
                    "max_current": circuit_a,
                    "chargers": [
                        {"id": f"bay_{n}", "phases": 3, "max_current": charger_a}
                        for n in range(1, chargers + 1)
                    ],
                }
            ],
        }
    )


# --- small cases, checked by hand ---------------------------------------------------------------
def test_smart_charges_in_the_price_valley_and_uncontrolled_at_arrival() -> None:
    # Given two cars on chargers of 10 A x 3 x 230 V = 6.9 kW, each wanting 6.9 kWh (one hour),
    # plugged in from 00:00 to 06:00, and a price valley from 02:00 to 04:00.
    site = one_circuit(circuit_a=63, chargers=2, charger_a=10)
    cars = [session("a", 0, 6, 6.9), session("b", 0, 6, 6.9)]
    tariff = prices(0.30, 0.30, 0.10, 0.10, 0.30, 0.30)
    sc = Scenario(site=site, sessions=cars, prices=tariff)
    uncontrolled, smart = simulate(sc, "uncontrolled"), simulate(sc, "smart")
    # Uncontrolled: both at 6.9 kW from 00:00 to 01:00, at 0.30 per kWh.
    assert uncontrolled.energy_cost == pytest.approx(2 * 6.9 * 0.30)
    assert uncontrolled.peak_kw["site"] == pytest.approx(13.8)
    assert all(kw == 0 for kw in uncontrolled.site_kw[4:])
    # Smart: all 13.8 kWh in the valley, at 0.10.
    assert smart.energy_cost == pytest.approx(13.8 * 0.10)
    assert sum(smart.site_kw[8:16]) == pytest.approx(sum(smart.site_kw)) == pytest.approx(13.8 * 4)
    # With a demand charge of 2 per kW, uncontrolled pays its 13.8 kW peak: 27.6 more.
    charged = simulate(Scenario(site=site, sessions=cars, prices=tariff, demand_charge=2.0),
                       "uncontrolled")  # fmt: skip
    assert charged.demand_charge == pytest.approx(27.6)
    assert charged.total_cost == pytest.approx(4.14 + 27.6)
    for r in (uncontrolled, smart):
        assert (r.vehicles_ready, r.vehicles_total) == (2, 2)
        assert r.energy_delivered_kwh == pytest.approx(r.energy_requested_kwh) == 13.8
        assert r.overloads == 0


def test_breakers_are_counted_under_uncontrolled_and_kept_under_smart() -> None:
    # Given a 32 A circuit with three 16 A chargers and three cars arriving together.
    site = one_circuit(circuit_a=32, chargers=3, charger_a=16)
    sc = Scenario(
        site=site,
        sessions=[session(f"car{n}", 18, 26, 20.0, kw=11.04) for n in range(3)],
        prices=prices(*[0.25] * 30),
    )
    uncontrolled, smart = simulate(sc, "uncontrolled"), simulate(sc, "smart")
    # 16 A x 3 x 230 V = 11.04 kW: 20 kWh take 8 quarters, all three at once: 48 A on each
    # phase of a 32 A breaker, 8 steps x 3 phases.
    assert uncontrolled.overloads == 24
    worst = uncontrolled.worst
    assert worst is not None and (worst.node, worst.unit) == ("c1", "A")
    assert worst.load == pytest.approx(48) and worst.over_pct == pytest.approx(50)
    assert worst.time == T0 + 18 * H
    assert smart.overloads == 0 and smart.worst is None
    assert smart.peak_kw["c1"] <= 32 * 3 * 230 / 1000 + 1e-6
    assert smart.vehicles_ready == 3 and uncontrolled.vehicles_ready == 3


def test_queueing_for_a_charger_and_a_car_that_never_gets_one() -> None:
    site = one_circuit(circuit_a=63, chargers=1, charger_a=16)
    sc = Scenario(
        site=site,
        sessions=[session("first", 0, 2, 5), session("second", 1, 4, 5), session("late", 1, 2, 5)],
        prices=prices(*[0.2] * 4),
    )
    visits = {v.request.id: v for v in whatif.assign(sc)}
    assert visits["second"].plug == T0 + 2 * H  # waits for the first to leave
    assert visits["late"].charger is None  # still waiting when it leaves
    result = simulate(sc, "uncontrolled")
    assert result.no_charger == ("late",) and result.not_ready == ("late",)
    assert result.vehicles_ready == 2


def test_foresight_charges_early_for_a_car_online_cannot_see_coming() -> None:
    # A 11 kW site; car A from 18:00 to 22:00 wants 20 kWh; the valley is 20:00-22:00. Car B
    # arrives at 20:00 and wants 16 kWh by 22:00. Online, A waits for the valley and then both
    # cannot fit in its 22 kWh; with foresight, A charges before B comes.
    site = quick_site(grid_kw=11, chargers=2, charger_kw=11)
    sessions = [session("A", 18, 22, 20.0), session("B", 20, 22, 16.0)]
    tariff = prices(*[0.30] * 20, 0.10, 0.10)
    online = simulate(Scenario(site=site, sessions=sessions, prices=tariff), "smart")
    ahead = simulate(Scenario(site=site, sessions=sessions, prices=tariff, foresight=True), "smart")
    assert ahead.vehicles_ready == 2
    assert ahead.energy_delivered_kwh == pytest.approx(36)
    assert online.vehicles_ready < 2 and online.energy_delivered_kwh < 36 - 10
    assert online.overloads == ahead.overloads == 0


def test_take_turns_keeps_the_plan_total_and_no_car_below_its_minimum() -> None:
    site = one_circuit(circuit_a=63, chargers=4, charger_a=32)
    sc = Scenario(site=site, sessions=[session(f"c{n}", 0, 8, 10) for n in range(4)],
                  prices=prices(*[0.2] * 8))  # fmt: skip
    visits = whatif.assign(sc)
    meter = Meter(sc, visits)
    planned = {
        0: 2.0,
        1: 2.0,
        2: 2.0,
        3: 8.0,
    }  # the LP spreads thin: 6 kW below the 4.14 kW minimum
    targets = take_turns(
        planned,
        {i: (4.14, 22.0) for i in planned},
        {i: kw / 4 for i, kw in planned.items()},
        dict.fromkeys(planned, 0.0),
        Room(meter),
    )
    assert sum(targets.values()) == pytest.approx(sum(planned.values()))
    assert all(kw >= 4.14 - 1e-9 for kw in targets.values())


# --- the command line ---------------------------------------------------------------------------
def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_evhub_plan_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = T0.isoformat
    sessions = _write(
        tmp_path / "sessions.csv",
        ["arrival", "departure", "energy_kwh", "max_kw", "vehicle_id"],
        [[t(), (T0 + 6 * H).isoformat(), 6.9, 6.9, "van_1"],
         [t(), (T0 + 6 * H).isoformat(), 6.9, 6.9, "van_2"]],
    )  # fmt: skip
    price_rows = [[(T0 + i * H).isoformat(), (T0 + (i + 1) * H).isoformat(), p]
                  for i, p in enumerate([0.3, 0.3, 0.1, 0.1, 0.3, 0.3])]  # fmt: skip
    price_file = _write(tmp_path / "prices.csv", ["start", "end", "price_per_kwh"], price_rows)
    out = tmp_path / "out.json"
    code = main(["plan", "--grid-kw", "50", "--chargers", "2", "--charger-kw", "6.9",
                 "--sessions", str(sessions), "--prices", str(price_file),
                 "--demand-charge", "2", "--policy", "uncontrolled,smart,llf,greedy",
                 "--policy", "offline", "--json", str(out),
                 "--chart", str(tmp_path / "chart")])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "uncontrolled" in printed and "vehicles ready at departure" in printed
    data = json.loads(out.read_text())
    assert list(data) == ["uncontrolled", "smart", "llf", "greedy", "offline"]
    fields = {"peak_kw", "overloads", "energy_cost", "demand_charge", "total_cost",
              "energy_requested_kwh", "energy_delivered_kwh", "vehicles_ready",
              "vehicles_total"}  # fmt: skip
    for policy in data.values():
        assert fields <= set(policy)
        assert policy["vehicles_total"] == 2 and policy["energy_requested_kwh"] == 13.8
    assert data["uncontrolled"]["energy_cost"] == pytest.approx(4.14)
    assert data["uncontrolled"]["demand_charge"] == pytest.approx(27.6)
    assert data["offline"]["total_cost"] <= data["smart"]["total_cost"] + 1e-6
    assert data["smart"]["overloads"] == {"count": 0, "worst": None}
    assert data["smart"]["total_cost"] < data["uncontrolled"]["total_cost"]
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "chart.html").read_text()
    assert "<svg" in page and "<script" not in page


def test_evhub_plan_with_the_example_site_and_a_tou_tariff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).resolve().parents[2]
    rows = [[(T0 + 18 * H).isoformat(), (T0 + 30 * H).isoformat(), 40, 11, f"van_{n}"]
            for n in range(8)]  # fmt: skip
    sessions = _write(tmp_path / "s.csv", ["arrival", "departure", "energy_kwh", "max_kw",
                                           "vehicle_id"], rows)  # fmt: skip
    tariff = tmp_path / "tou.yaml"
    tariff.write_text(
        "time_zone: Europe/Berlin\n"
        "periods:\n"
        "  - {name: night, start: '22:00', end: '06:00', price: 0.12}\n"
        "  - {name: day, price: 0.35}\n"
        "demand_charges:\n"
        "  - {rate: 4.0, basis: monthly}\n"
    )
    out = tmp_path / "out.json"
    code = main(["plan", "--site", str(root / "config" / "site.yaml"), "--sessions",
                 str(sessions), "--tariff", str(tariff), "--json", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert set(data["smart"]["peak_kw"]) >= {"depot", "panel_ac", "panel_dc"}
    assert data["smart"]["overloads"]["count"] == 0
    assert data["smart"]["vehicles_ready"] == 8
    assert data["uncontrolled"]["demand_charge"] == pytest.approx(
        4.0 * data["uncontrolled"]["peak_kw"]["depot"], rel=1e-3
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["2026-03-02T18:00:00", "2026-03-03T06:00:00+01:00", 10, 11], "s.csv:2: column arrival"),
        (["2026-03-02T18:00:00+01:00", "2026-03-02T06:00:00+01:00", 10, 11], "column departure"),
        (["2026-03-02T18:00:00+01:00", "2026-03-03T06:00:00+01:00", "ten", 11], "energy_kwh"),
        (["2026-03-02T18:00:00+01:00", "2026-03-03T06:00:00+01:00", 10, 0], "column max_kw"),
    ],
)
def test_bad_input_names_the_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: list[object], message: str
) -> None:
    sessions = _write(tmp_path / "s.csv", ["arrival", "departure", "energy_kwh", "max_kw"], [row])
    code = main(["plan", "--grid-kw", "50", "--chargers", "2", "--charger-kw", "11",
                 "--sessions", str(sessions)])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("automations:night_shift", "no automations file (automations_night_shift.yaml, "),
        ("cheapest", "unknown policy 'cheapest'"),
    ],
)
def test_an_unknown_policy_or_automation_set_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
    message: str,
) -> None:
    # Automation policies run the hub: tests/smart_charging/test_whatif_automations.py.
    monkeypatch.chdir(tmp_path)
    rows = [[T0.isoformat(), (T0 + H).isoformat(), 1, 11]]
    sessions = _write(tmp_path / "s.csv", ["arrival", "departure", "energy_kwh", "max_kw"], rows)
    code = main(["plan", "--grid-kw", "50", "--chargers", "1", "--charger-kw", "11",
                 "--sessions", str(sessions), "--policy", policy])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err


# --- a realistic week -----------------------------------------------------------------------------
LA = ZoneInfo("America/Los_Angeles")  # the tariff is SCE's (Southern California Edison)


def fleet_week(vehicles: int) -> list[SessionRequest]:
    """A week of depot sessions from the spice_ev example rotations.

    Each row there is a day: the vehicle leaves at departure_time, is back at arrival_time with
    `soc`, and stays until the next row's departure_time. The example has two vehicles over three
    days: each of ours cycles one of them through 7 days, shifted by up to an hour either way so
    that arrivals spread. Its type there (AB-OPP) is not in vehicle_types.json: ours alternate
    the two real types, and want (1 - soc) x capacity at the type's charging power.
    """
    with (SHARED / "data" / "fleet" / "rotations_example.csv").open() as f:
        rows = list(csv.DictReader(f))
    types = json.loads((SHARED / "data" / "fleet" / "vehicle_types.json").read_text())
    by_vehicle: dict[str, list[dict[str, str]]] = {}
    for r in sorted(rows, key=lambda r: r["departure_time"]):
        by_vehicle.setdefault(r["vehicle_id"], []).append(r)
    patterns = [by_vehicle[k] for k in sorted(by_vehicle)]
    first_day = datetime.fromisoformat(patterns[0][0]["departure_time"]).date()
    out = []
    for i in range(vehicles):
        days, kind = patterns[i % len(patterns)], types[("sprinter", "golf")[(i // 2) % 2]]
        shift = timedelta(minutes=(i * 37) % 120 - 60)
        for d in range(7):
            here, there = days[d % len(days)], days[(d + 1) % len(days)]
            back = datetime.fromisoformat(here["arrival_time"]).time()
            off = datetime.fromisoformat(there["departure_time"]).time()
            day = first_day + timedelta(days=d)
            out.append(
                SessionRequest(
                    id=f"v{i:02d} day {d}",
                    arrival=datetime.combine(day, back, LA) + shift,
                    departure=datetime.combine(day + timedelta(days=1), off, LA) + shift,
                    energy_kwh=round((1 - float(here["soc"])) * kind["capacity"], 2),
                    max_kw=float(max(p for _, p in kind["charging_curve"])),
                )
            )
    return out


def depot(chargers: int) -> Site:
    """Circuits of four 32 A chargers on 63 A breakers, two 160 A panels, 250 A / 160 kW grid."""
    circuits = [
        {"id": f"row_{c + 1}", "max_current": 63,
         "chargers": [{"id": f"bay_{n + 1:02d}", "phases": 3, "max_current": 32,
                       "phase_rotation": ("L1L2L3", "L2L3L1", "L3L1L2")[n % 3]}
                      for n in range(4 * c, min(4 * c + 4, chargers))]}
        for c in range((chargers + 3) // 4)
    ]  # fmt: skip
    half = (len(circuits) + 1) // 2
    return Site.from_config(
        {
            "id": "depot",
            "max_current": 250,
            "max_power_kw": 160,
            "panels": [
                {"id": "panel_a", "max_current": 160, "circuits": circuits[:half]},
                {"id": "panel_b", "max_current": 160, "circuits": circuits[half:]},
            ],
        }
    )


def test_a_week_of_fleet_sessions_on_a_real_tariff() -> None:
    # The tariffs plugin's own pure modules read the tariff here: the planner may not import
    # another plugin, the test may.
    from plugins.tariffs.acnportal import rules_from_acnportal
    from plugins.tariffs.tou import TouRules, expand

    doc = json.loads((SHARED / "data/tariffs/acnportal/sce_tou_ev_4_march_2019.json").read_text())
    rules = TouRules.from_config(rules_from_acnportal(doc))
    sessions = fleet_week(24)
    start = min(s.arrival for s in sessions) - H
    end = max(s.departure for s in sessions) + H
    tariff = expand(rules, start, end, LA, step=timedelta(minutes=15))
    sc = Scenario(
        site=depot(24),
        sessions=sessions,
        prices=tariff,
        # SCE TOU-EV-4's 15.51 $/kW, charged once on the week's peak as `--demand-charge` does.
        demand_charge=max(c.rate for c in rules.demand_charges),
    )
    visits = whatif.assign(sc)
    results = {p: simulate(sc, p, visits) for p in ("uncontrolled", "smart", "llf", "greedy")}
    bound = offline_optimum(sc, visits)
    uncontrolled, smart = results["uncontrolled"], results["smart"]

    assert uncontrolled.overloads > 0  # the depot cannot carry the fleet uncontrolled
    assert all(results[p].overloads == 0 for p in ("smart", "llf", "greedy"))
    assert bound.overloads == 0 and bound.vehicles_ready == bound.vehicles_total == 168
    # AC minimums against a plan that ignores them can leave a rare car a few tenths short.
    assert smart.vehicles_ready >= 166
    assert smart.energy_delivered_kwh >= smart.energy_requested_kwh - 1.0
    assert smart.total_cost < 0.5 * uncontrolled.total_cost
    assert smart.total_cost < min(results["llf"].total_cost, results["greedy"].total_cost)
    # With every session known, the same receding horizon comes within 3 % of the one LP over
    # the week (measured 0.2 %; the LP relaxes AC minimum currents, so it is a bound).
    ahead = simulate(replace(sc, foresight=True), "smart", visits)
    assert ahead.overloads == 0 and ahead.vehicles_ready >= 164
    assert ahead.total_cost <= 1.03 * bound.total_cost
    # Online, the first evening's peak is set before the fleet is known (each arrival raises the
    # flat level the LP spreads the known cars over) and the week pays it: measured 5.1 % above
    # the offline optimum. No online policy can promise 3 % for a fleet it has not seen
    # (tests/bench/test_online_bound.py); with history it can:
    gap = smart.total_cost / bound.total_cost - 1
    assert 0 <= gap < 0.06, f"online smart is {gap:.1%} above the offline optimum"
    # A hub that ran last week knows its peak: planned as the live hub plans with it
    # (0.95 x it as if paid), the same week comes to 1.1 % above the optimum (measured).
    again = simulate(replace(sc, last_peaks_kw=(smart.peak_kw["depot"],)), "smart", visits)
    assert again.overloads == 0 and again.vehicles_ready >= 166
    assert again.total_cost <= 1.02 * bound.total_cost < smart.total_cost


@pytest.mark.parametrize(
    ("value", "message"), [("80,abc", "kW numbers, comma-separated"), ("-3", ">= 0")]
)
def test_bad_last_peaks_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    rows = [[T0.isoformat(), (T0 + H).isoformat(), 1, 11]]
    sessions = _write(tmp_path / "s.csv", ["arrival", "departure", "energy_kwh", "max_kw"], rows)
    code = main(["plan", "--grid-kw", "50", "--chargers", "1", "--charger-kw", "11",
                 "--sessions", str(sessions), f"--last-peaks={value}"])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err


def test_the_last_peaks_are_said_in_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [[T0.isoformat(), (T0 + 4 * H).isoformat(), 20, 11]]
    sessions = _write(tmp_path / "s.csv", ["arrival", "departure", "energy_kwh", "max_kw"], rows)
    code = main(["plan", "--grid-kw", "50", "--chargers", "1", "--charger-kw", "11",
                 "--sessions", str(sessions), "--demand-charge", "10",
                 "--last-peaks", "12,9.5,11", "--policy", "smart"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "last periods' peaks 12, 9.5, 11 kW" in out
