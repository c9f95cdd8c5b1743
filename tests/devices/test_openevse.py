"""OpenEVSE over RAPI: frames and checksums, then a simulated OpenEVSE on a socat pty pair that
follows the RAPI spec; the hub drives it as a ChargerEntity and survives a bad line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import plugins.openevse as openevse
from hub.bus import EVENT_STATE_CHANGED
from hub.charging.charger import ChargingSchedule
from hub.clock import SimClock
from hub.core import Hub
from plugins.openevse.charger import OpenEvseCharger
from plugins.openevse.rapi import RapiError, frame, parse
from plugins.openevse.sim import SimulatedOpenEvse
from tests.devices.support import SocatPair, advance_until, plugin_hub


def test_frames_checksums_and_sequence_ids() -> None:
    assert frame("FE") == b"$FE^27\r"
    msg = parse("$OK 3 0 3 0000 :2A^" + f"{_xor('$OK 3 0 3 0000 :2A'):02X}")
    assert (msg.kind, msg.params, msg.seq) == ("OK", ["3", "0", "3", "0000"], 0x2A)
    assert parse("$FD*AE").kind == "FD", "the legacy additive checksum is still understood"
    assert parse("$AT 03 03 16 0000").kind == "AT", "old firmware sends no checksum"
    for bad in ("$OK 10^00", "$FD*00", "garbage", "$", "$OK^ZZ"):
        with pytest.raises(RapiError):
            parse(bad)


def _xor(text: str) -> int:
    value = 0
    for byte in text.encode():
        value ^= byte
    return value


class Rig:
    def __init__(self, hub: Hub, sim: SimulatedOpenEvse, pair: SocatPair) -> None:
        self.hub, self.sim, self.pair = hub, sim, pair
        self.clock: SimClock = hub.clock  # type: ignore[assignment]
        self.charger: OpenEvseCharger = hub.data["openevse"][0]
        self._waited = -1

    async def settle(self) -> None:
        # Wait for a poll in flight once; a poll that hangs (a silent EVSE) is not waited again.
        if self.charger._polling and self._waited == self.charger.polls:
            return
        self._waited = self.charger.polls
        try:
            await asyncio.wait_for(self.charger.idle.wait(), 0.25)
        except TimeoutError:
            pass
        for _ in range(5):
            await asyncio.sleep(0)

    def state(self) -> Any:
        state = self.hub.states.get("charger.garage")
        return None if state is None else state.state

    async def until(self, predicate: Any, what: str, limit: float = 120) -> float:
        return await advance_until(self.clock, predicate, self.settle, limit=limit, what=what)


@asynccontextmanager
async def rig(tmp_path: Path, pair: SocatPair, **conf: Any) -> AsyncIterator[Rig]:
    clock = SimClock()
    sim = SimulatedOpenEvse(clock, pair.b, max_amps=32)
    await sim.start()
    charger = {"name": "garage", "serial_port": pair.a, "interval": 5, "timeout": 2, **conf}
    try:
        async with plugin_hub(
            tmp_path, clock, "openevse", openevse, {"chargers": [charger]}
        ) as hub:
            r = Rig(hub, sim, pair)
            await r.until(lambda: r.state() == "available", "available")
            yield r
    finally:
        await sim.stop()


@pytest.mark.parametrize("sequence_ids", [False, True])
async def test_the_hub_drives_an_openevse(
    tmp_path: Path, socat_pair: SocatPair, sequence_ids: bool
) -> None:
    async with rig(tmp_path, socat_pair, sequence_ids=sequence_ids) as r:
        data = r.charger.data
        assert data.firmware == "8.2.2" and data.min_current_a == 6 and data.max_current_a == 32
        r.sim.plug_in(car_amps=16)
        # $AT arrives on its own: the state changes before any poll asks.
        await asyncio.wait_for(_until_state(r, "charging"), 2)
        session = r.hub.states.get("charger.garage").attributes["session_id"]  # type: ignore[union-attr]
        assert session

        result = await r.charger.set_limit(ChargingSchedule.constant(10.7))
        assert result.accepted, result.detail
        assert r.sim.amps == 10 and "SC 10 V" in r.sim.received  # whole amps, down; volatile
        await r.until(lambda: data.current_a == (10.0,), "drawing 10 A")
        assert data.power_w == pytest.approx(2300)

        start_wh = data.energy_wh
        # An hour at 10 A, 230 V; steps shorter than the 2 s command timeout, so every poll's
        # real I/O finishes before hub time moves past it.
        for _ in range(2400):
            await r.clock.advance(1.5)
            await r.settle()
        assert r.charger.online
        assert data.energy_wh - start_wh == pytest.approx(2300, rel=0.02)  # type: ignore[operator]

        result = await r.charger.set_limit(ChargingSchedule.constant(2))
        assert result.accepted and r.sim.received[-1] == "FS"
        await r.until(lambda: r.state() == "suspended_evse", "paused")
        result = await r.charger.set_limit(ChargingSchedule.constant(12))
        assert result.accepted and r.sim.received[-2:] == ["SC 12 V", "FE"]
        await r.until(lambda: r.state() == "charging", "resumed")

        r.sim.unplug()
        await asyncio.wait_for(_until_state(r, "available"), 2)
        assert r.hub.states.get("charger.garage").attributes["session_id"] is None  # type: ignore[union-attr]


async def _until_state(r: Rig, want: str) -> None:
    """No clock step: only the EVSE's own $AT message can change the state."""
    changed = asyncio.Event()
    remove = r.hub.bus.listen(EVENT_STATE_CHANGED, lambda _e: changed.set())
    try:
        while r.state() != want:
            changed.clear()
            await changed.wait()
    finally:
        remove()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("bad_checksum", "bad checksum"), ("garbage", "garbage"), ("silent", "no answer")],
)
async def test_a_bad_line_makes_it_unavailable_and_it_recovers(
    tmp_path: Path, socat_pair: SocatPair, caplog: pytest.LogCaptureFixture, fault: str,
    reason: str,
) -> None:  # fmt: skip
    async with rig(tmp_path, socat_pair) as r:
        await r.charger.set_limit(ChargingSchedule.constant(14))
        r.sim.fault = fault
        await r.until(lambda: r.state() == "unavailable", f"unavailable on {fault}")
        assert reason in (r.charger.error or "")
        for _ in range(60):
            await r.clock.advance(1)
            await r.settle()
        warnings = [m for m in caplog.messages if "openevse garage unavailable" in m]
        assert len(warnings) == 1
        r.sim.fault = None
        r.sim.amps = 32  # as if it had restarted meanwhile: the limit must be sent again
        await r.until(lambda: r.state() == "available", "back", limit=180)
        assert r.sim.amps == 14


async def test_unplugged_cable_and_a_restart(
    tmp_path: Path, socat_pair: SocatPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "plugins.openevse")
    async with rig(tmp_path, socat_pair) as r:
        await r.charger.set_limit(ChargingSchedule.constant(9))
        r.sim.restart()  # $AB: its volatile current is gone; the hub sends it again at once
        await asyncio.wait_for(_until_amps(r.sim, 9), 2)

        await r.sim.stop()
        socat_pair.stop()
        await r.until(lambda: r.state() == "unavailable", "unplugged")
        assert "lost" in (r.charger.error or "") or "cannot open" in (r.charger.error or "")
        socat_pair.start()
        r.sim.amps = 32
        await r.sim.start()
        await r.until(lambda: r.state() == "available", "plugged back", limit=130)
        assert r.sim.amps == 9
        assert any("openevse garage online" in m for m in caplog.messages)


async def _until_amps(sim: SimulatedOpenEvse, amps: int) -> None:
    while sim.amps != amps:
        sim.activity.clear()
        await sim.activity.wait()
