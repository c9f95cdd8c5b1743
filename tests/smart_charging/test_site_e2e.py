"""End to end on the simulated clock: simulated OCPP chargers with arriving vehicles, the hub's
OCPP server and the smart-charging engine keep two cars on a 16 A circuit within 16 A."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import yaml

from hub.bootstrap import create_hub
from hub.clock import SimClock

PASSWORD = "e2e-charger-password-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_simulated_cars_never_overload_their_circuit(tmp_path: Path) -> None:
    port = _free_port()
    ids = ["e2e_01", "e2e_02"]
    config = {
        "site": {
            "id": "yard", "max_current": 63,
            "circuits": [{"id": "c16", "max_current": 16, "chargers": [
                {"id": i, "entity": f"charger.{i}_1", "phases": 3, "max_current": 16}
                for i in ids]}],
        },
        "ocpp": {"host": "127.0.0.1", "port": port, "ping_interval": 0,
                 "chargers": [{"id": i, "password": PASSWORD} for i in ids]},
        "allowlist": {"tokens": [{"id": "04A1B2C3"}]},
        "simulator": {
            "url": f"ws://127.0.0.1:{port}/ocpp", "meter_interval": 30, "id_tags": ["04A1B2C3"],
            "arrivals": {"first_within": 60, "dwell": [7200, 7200], "soc": [10, 20]},
            "chargers": [{"id": "e2e_{n:02d}", "count": 2, "ocpp": "1.6", "connectors": 1,
                          "max_current": 16, "password": PASSWORD}],
        },
        "smart_charging": {"interval": 5, "plan": False},
    }  # fmt: skip
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    clock = SimClock(start=datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    hub = create_hub(tmp_path, clock=clock)
    await hub.start()
    try:
        worst = 0.0
        sessions_seen: set[str] = set()
        for step in range(1200):  # 20 simulated minutes
            # One-second steps: real websocket round trips need loop turns between timers,
            # or a 30 s jump would expire calls whose answers are already on the wire.
            await clock.advance(1)
            if step % 30:
                continue
            await hub.block_till_done()
            states = [hub.states.get(f"charger.{i}_1") for i in ids]
            if any(s is None for s in states):
                continue
            sessions_seen |= {
                s.attributes["session_id"] for s in states if s.attributes["session_id"]
            }
            # The physical draw at this instant, from the simulated chargers themselves: summing
            # their last meter readings would add samples taken at different moments.
            chargers = hub.data["simulator"].status()["chargers"]
            drawn = sum(c["power_w"] for ch in chargers for c in ch["connectors"]) / (3 * 230)
            worst = max(worst, drawn)
        assert len(sessions_seen) == 2, "both cars should have started charging"
        assert worst <= 16.0 + 0.5  # meter rounding; the breaker is 16 A
        assert drawn >= 14.0  # and the circuit is used: two cars share it, ~8 A each
        reasons = [hub.states.get(f"charger.{i}_1").attributes["limit_reason"] for i in ids]
        assert all(r and "c16" in r for r in reasons), reasons
    finally:
        await hub.stop()


async def test_each_connector_of_a_two_connector_charger_keeps_its_own_limit(
    tmp_path: Path,
) -> None:
    port = _free_port()
    config = {
        "site": {"id": "yard", "max_current": 63, "circuits": [
            {"id": "c32", "max_current": 32, "chargers": [
                {"entity": f"charger.twin_{c}", "phases": 3, "max_current": 16} for c in (1, 2)]}]},
        "ocpp": {"host": "127.0.0.1", "port": port, "ping_interval": 0,
                 "chargers": [{"id": "twin", "password": PASSWORD}]},
        "allowlist": {"tokens": [{"id": "04A1B2C3"}]},
        "simulator": {
            "url": f"ws://127.0.0.1:{port}/ocpp", "meter_interval": 30, "id_tags": ["04A1B2C3"],
            "arrivals": {"first_within": 60, "dwell": [7200, 7200], "soc": [10, 20]},
            "chargers": [{"id": "twin", "ocpp": "1.6", "connectors": 2, "max_current": 16,
                          "password": PASSWORD}],
        },
        "smart_charging": {"interval": 5, "plan": False},
    }  # fmt: skip
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    clock = SimClock(start=datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    hub = create_hub(tmp_path, clock=clock)
    await hub.start()
    try:
        for _ in range(600):
            await clock.advance(1)
        await hub.block_till_done()
        await hub.services.call("charging", "set_charger_limit",
                                {"entity_id": "charger.twin_1", "limit_a": 6})  # fmt: skip

        def drawn(entity_id: str) -> float:
            return max(hub.states.get(entity_id).attributes["current_a"] or [0.0])

        # Up to ten simulated minutes for the chargers to report the new limits (a few meter
        # intervals); a loaded machine needs more loop turns per step, not more simulated time.
        for _ in range(600):
            await clock.advance(1)
            if drawn("charger.twin_1") <= 6.5 and drawn("charger.twin_2") >= 15.0:
                break
        first = hub.states.get("charger.twin_1").attributes
        second = hub.states.get("charger.twin_2").attributes
        assert drawn("charger.twin_1") <= 6.5, first["limit_reason"]
        assert drawn("charger.twin_2") >= 15.0, second["limit_reason"]
    finally:
        await hub.stop()
