"""The simulator's physics without sockets: profile stacking, schedules, taper, a full battery.

Given profiles and a vehicle at explicit times, what a charger offers and what the vehicle draws.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from plugins.simulator.connector import Connector, Status, Transaction
from plugins.simulator.physics import (
    CHARGING,
    SUSPENDED_EV,
    SUSPENDED_EVSE,
    Draw,
    Vehicle,
    acceptance,
    draw,
    share,
)
from plugins.simulator.profiles import CP_MAX, TX, ChargingProfile, Limit, ProfileStore
from plugins.simulator.vehicles import (
    BUILTIN_MODELS,
    EVSPECS,
    ArrivalConfig,
    VisitPlanner,
    load_models,
    models_from_evspecs,
)

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
V3 = (230.0, 230.0, 230.0)


def profile(
    pid: int,
    purpose: str,
    limit: float | list[tuple[int, float]],
    *,
    stack: int = 0,
    kind: str = "Absolute",
    unit: str = "A",
    **extra: Any,
) -> ChargingProfile:
    periods = [(0, limit)] if isinstance(limit, int | float) else limit
    schedule = {
        "charging_rate_unit": unit,
        "charging_schedule_period": [{"start_period": s, "limit": v} for s, v in periods],
        **{k: extra.pop(k) for k in ("start_schedule", "duration") if k in extra},
    }
    data = {
        "charging_profile_id": pid,
        "stack_level": stack,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "charging_schedule": schedule,
        **extra,
    }
    return ChargingProfile.from_ocpp(data, installed=T0)


def amps(store: ProfileStore, at: datetime, tx_start: datetime | None = T0) -> float | None:
    return store.connector_limit(1, at, tx_start).amps


def ev(soc: float = 30.0, target: float = 100.0, amps: float = 16.0, phases: int = 3) -> Vehicle:
    return Vehicle("EV-1", "Test", 60.0, soc, target, amps, phases)


# --- profiles ---------------------------------------------------------------------------------


def test_the_highest_stack_level_of_a_purpose_wins_while_it_is_valid() -> None:
    store = ProfileStore()
    store.install(0, profile(1, "TxDefaultProfile", 16, stack=0))
    store.install(0, profile(2, "TxDefaultProfile", 10, stack=1, valid_to="2026-03-02T07:00:00Z"))
    assert amps(store, T0) == 10
    assert amps(store, T0 + timedelta(hours=2)) == 16  # stack 1 expired: stack 0 again


def test_a_tx_profile_overrides_tx_default_whatever_their_stack_levels() -> None:
    store = ProfileStore()
    store.install(0, profile(1, "TxDefaultProfile", 10, stack=5))
    store.install(1, profile(2, TX, 20, stack=0, kind="Relative"))
    assert amps(store, T0) == 20
    assert amps(store, T0, tx_start=None) == 10  # no transaction: no TxProfile
    store.drop_tx_profiles(1)
    assert amps(store, T0) == 10


def test_a_connector_profile_beats_the_charger_wide_one_on_a_tie() -> None:
    store = ProfileStore()
    store.install(0, profile(1, "TxDefaultProfile", 16, stack=2))
    store.install(1, profile(2, "TxDefaultProfile", 8, stack=2))
    assert amps(store, T0) == 8
    assert store.connector_limit(2, T0, T0).amps == 16


def test_schedule_periods_count_from_the_schedule_start() -> None:
    store = ProfileStore()
    store.install(
        1,
        profile(
            1,
            "TxDefaultProfile",
            [(0, 16), (3600, 8)],
            start_schedule="2026-03-02T06:00:00Z",
            duration=7200,
        ),
    )
    assert amps(store, T0 + timedelta(minutes=30)) == 16
    assert amps(store, T0 + timedelta(minutes=90)) == 8
    assert amps(store, T0 + timedelta(hours=3)) is None  # after the schedule's duration


def test_relative_and_recurring_profiles() -> None:
    relative = ProfileStore()
    relative.install(1, profile(1, TX, [(0, 32), (1800, 12)], kind="Relative"))
    tx_start = T0 + timedelta(hours=5)
    assert relative.connector_limit(1, tx_start + timedelta(minutes=40), tx_start).amps == 12

    daily = ProfileStore()
    night = profile(
        2,
        "TxDefaultProfile",
        [(0, 6), (6 * 3600, 32)],
        kind="Recurring",
        recurrency_kind="Daily",
        start_schedule="2026-03-01T00:00:00Z",
    )
    daily.install(0, night)
    assert amps(daily, datetime(2026, 3, 5, 3, 0, tzinfo=UTC)) == 6
    assert amps(daily, datetime(2026, 3, 5, 9, 0, tzinfo=UTC)) == 32


def test_a_new_profile_replaces_one_with_its_id_or_its_stack_level_and_purpose() -> None:
    store = ProfileStore()
    store.install(1, profile(1, "TxDefaultProfile", 16, stack=1))
    store.install(1, profile(2, "TxDefaultProfile", 12, stack=1))  # same level + purpose
    store.install(0, profile(2, "TxDefaultProfile", 10, stack=3))  # same id, moved
    assert [(c, p.id, p.stack_level) for c, p in store.all()] == [(0, 2, 3)]
    assert store.clear(purpose="TxDefaultProfile", stack_level=9) == 0
    assert store.clear(connector_id=0) == 1


def test_201_profiles_use_a_schedule_list_and_the_station_max_purpose() -> None:
    data = {
        "id": 4,
        "stack_level": 0,
        "charging_profile_purpose": "ChargingStationMaxProfile",
        "charging_profile_kind": "Absolute",
        "charging_schedule": [
            {
                "id": 1,
                "start_schedule": "2026-03-02T06:00:00Z",
                "charging_rate_unit": "W",
                "charging_schedule_period": [{"start_period": 0, "limit": 22_000}],
            }
        ],
    }
    parsed = ChargingProfile.from_ocpp(data, installed=T0)
    assert (parsed.id, parsed.purpose, parsed.unit) == (4, CP_MAX, "W")
    store = ProfileStore()
    store.install(0, parsed)
    assert store.station_limit(T0) == Limit(watts=22_000)


def test_a_composite_schedule_merges_every_layer_in_the_asked_unit() -> None:
    store = ProfileStore()
    store.install(
        0, profile(1, CP_MAX, [(0, 20), (1800, 8)], start_schedule="2026-03-02T06:00:00Z")
    )
    store.install(1, profile(2, "TxDefaultProfile", 16, start_schedule="2026-03-02T06:00:00Z"))
    common = {"tx_start": T0, "tx_id": None, "max_current": 32.0, "phases": 3, "voltage": 230.0}
    assert store.composite(1, T0, 3600, unit="A", **common) == [(0.0, 16.0), (1800.0, 8.0)]
    assert store.composite(0, T0, 3600, unit="W", **common) == [(0.0, 13800.0), (1800.0, 5520.0)]
    assert ProfileStore().composite(1, T0, 600, unit="A", **common) == [(0.0, 32.0)]


# --- what a vehicle draws ---------------------------------------------------------------------


def test_the_draw_is_the_least_of_charger_profile_and_vehicle() -> None:
    assert draw(ev(amps=16), max_current=32, phases=3, limit=Limit(), voltage=230) == Draw(
        16.0, 3, CHARGING
    )
    assert draw(ev(), max_current=32, phases=3, limit=Limit(amps=10), voltage=230).amps == 10
    watts = draw(ev(amps=32), max_current=32, phases=3, limit=Limit(watts=7360), voltage=230)
    assert watts.amps == pytest.approx(10.67, abs=0.01)
    single = draw(ev(phases=1), max_current=32, phases=3, limit=Limit(), voltage=230)
    assert single.phases == 1


def test_below_six_amps_the_charger_suspends_and_a_full_vehicle_suspends_itself() -> None:
    low = draw(ev(), max_current=32, phases=3, limit=Limit(amps=5), voltage=230)
    assert (low.amps, low.state) == (0.0, SUSPENDED_EVSE)
    full = draw(ev(soc=80, target=80), max_current=32, phases=3, limit=Limit(), voltage=230)
    assert (full.amps, full.state) == (0.0, SUSPENDED_EV)


def test_above_80_percent_the_battery_tapers() -> None:
    assert acceptance(50) == acceptance(80) == 1.0
    assert acceptance(90) == pytest.approx(0.6)
    assert acceptance(100) == pytest.approx(0.2)
    tapered = draw(ev(soc=90), max_current=32, phases=3, limit=Limit(), voltage=230)
    assert tapered.amps == pytest.approx(16 * 0.6)


def test_a_station_limit_is_shared_by_the_connectors_drawing() -> None:
    draws = [Draw(16.0, 3, CHARGING), Draw(16.0, 3, CHARGING), Draw(0.0, 3, SUSPENDED_EV)]
    shared = share(draws, Limit(amps=20), voltage=230)
    assert [d.amps for d in shared] == [10.0, 10.0, 0.0]
    starved = share(draws[:2], Limit(amps=10), voltage=230)
    assert [d.state for d in starved] == [SUSPENDED_EVSE, SUSPENDED_EVSE]  # 5 A each: too little


def test_the_meter_integrates_power_and_stops_at_the_target_soc() -> None:
    conn = Connector(1, 1_000_000.0, T0)
    conn.vehicle = ev(soc=79.0, target=80.0)  # 60 kWh: 1 % is 600 Wh in the battery
    conn.tx = Transaction("t1", "TAG", T0, 1_000_000)
    conn.apply(Draw(16.0, 3, CHARGING))
    assert conn.power(V3) == pytest.approx(11_040)
    conn.advance(T0 + timedelta(minutes=1), V3)
    assert conn.energy_wh == pytest.approx(1_000_184)
    conn.advance(T0 + timedelta(hours=1), V3)
    assert conn.vehicle.full
    assert conn.energy_wh == pytest.approx(1_000_000 + 600 / 0.9)  # grid energy, losses included
    assert conn.tx.charging_s == pytest.approx(600 / 0.9 / 11_040 * 3600)
    conn.apply(draw(conn.vehicle, max_current=32, phases=3, limit=Limit(), voltage=230))
    assert conn.derived_status() is Status.SUSPENDED_EV


# --- vehicles and their visits ----------------------------------------------------------------


def test_visits_are_a_pure_function_of_seed_connector_and_number() -> None:
    arrivals = ArrivalConfig(dwell=(3600, 7200), soc=(10, 40))
    a = VisitPlanner(7, BUILTIN_MODELS, ["TAG1", "TAG2"], arrivals)
    b = VisitPlanner(7, BUILTIN_MODELS, ["TAG1", "TAG2"], arrivals)
    first, again = a.vehicle("cp/1", 0, T0), b.vehicle("cp/1", 0, T0)
    assert first == again
    assert a.vehicle("cp/2", 0, T0) != first
    assert first.id_tag in ("TAG1", "TAG2") and 10 <= first.soc <= 40 < first.target_soc
    assert first.departure is not None
    assert 3600 <= (first.departure - T0).total_seconds() <= 7200
    app = VisitPlanner(7, BUILTIN_MODELS, ["TAG1"], ArrivalConfig(remote_share=1.0))
    assert app.vehicle("cp/1", 0, T0).id_tag is None  # starts by app: waits for a remote start


def test_vehicle_models_come_from_evspecs_when_present(tmp_path: Path) -> None:
    data = {
        "fallback_parameters": {},
        "Nissan": {"Leaf": {"2018": {"battery_cap": {"value": 40.0}}}},
        "Tesla": {"Model 3": {"2019": {"battery_cap": {"value": 79.5}}}},
    }
    models = {m.name: m for m in models_from_evspecs(data)}
    assert models["Nissan Leaf 2018"].phases == 1
    assert (
        models["Tesla Model 3 2019"].max_ac_current == 16
        and models["Tesla Model 3 2019"].phases == 3
    )
    assert load_models(tmp_path / "missing.json") == BUILTIN_MODELS
    if EVSPECS.is_file():
        assert len(load_models()) > len(BUILTIN_MODELS) + 20


# --- offline memory ---------------------------------------------------------------------------


def test_offline_a_charger_forgets_periodic_readings_first_when_its_memory_is_full() -> None:
    from plugins.simulator.link import MAX_QUEUED, Outbox, Outgoing

    outbox = Outbox("cp", spawn=lambda coro, name: coro.close(), clock=None)  # type: ignore[arg-type,func-returns-value]
    start = Outgoing(lambda: ("StartTransaction", {}), durable=True)
    outbox.put(start)
    for _ in range(MAX_QUEUED + 10):
        outbox.put(Outgoing(lambda: ("MeterValues", {}), durable=True, periodic=True))
    outbox.put(Outgoing(lambda: ("StatusNotification", {})))  # not durable: dropped offline
    assert len(outbox.queue) == MAX_QUEUED
    assert outbox.queue[0] is start
    assert outbox.stats.dropped == 11 + 1
