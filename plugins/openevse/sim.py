"""A simulated OpenEVSE on a serial port, answering RAPI as the firmware's rapi_proc.h describes:
checksums checked and sent, sequence ids echoed, $AT on every state change, $AB after a restart.

For the tests and for trying the plugin without hardware (a `socat` pty pair joins the two ends).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import serial_asyncio

from plugins.openevse.rapi import RapiError, parse, xor_checksum

if TYPE_CHECKING:
    from hub.clock import Clock

STATE_A, STATE_B, STATE_C, SLEEPING, DISABLED = 0x01, 0x02, 0x03, 0xFE, 0xFF


class SimulatedOpenEvse:
    """The EVSE and the car on its cable; `fault` makes it misbehave on the wire."""

    def __init__(
        self,
        clock: Clock,
        port: str,
        *,
        min_amps: int = 6,
        max_amps: int = 32,
        firmware: str = "8.2.2",
        millivolts: int = 230_000,
    ) -> None:
        self.clock = clock
        self.port = port
        self.min_amps, self.max_amps = min_amps, max_amps
        self.firmware = firmware
        self.millivolts = millivolts
        self.amps = max_amps  # current capacity (pilot)
        self.state = STATE_A
        self.car_amps: float | None = None  # None: no car; else what it would draw
        self.watt_seconds = 0.0
        self.wh_total = 12_000
        self.fault: str | None = None  # None | "garbage" | "bad_checksum" | "silent"
        self.received: list[str] = []
        self.activity = asyncio.Event()  # set on every command: tests wait on it
        self._last = clock.monotonic()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    # --- wire -----------------------------------------------------------------------------------
    async def start(self) -> None:
        reader, self._writer = await serial_asyncio.open_serial_connection(
            url=self.port, baudrate=115200
        )
        self._task = asyncio.ensure_future(self._serve(reader))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._task = self._writer = None

    def _send(self, body: str) -> None:
        if self._writer is None:
            return
        if self.fault == "garbage":
            self._writer.write(b"\x13\xfe#!garbage\xff\r")
            return
        check = xor_checksum(body)
        if self.fault == "bad_checksum":
            check ^= 0x55
        self._writer.write(f"{body}^{check:02X}\r".encode("latin-1"))

    async def _serve(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, OSError):
            while True:
                line = (await reader.readuntil(b"\r")).decode("latin-1").strip()
                if self.fault == "silent":
                    continue
                self._answer(line)

    def _answer(self, line: str) -> None:
        try:
            msg = parse(line)
        except RapiError:
            self._send("$NK")  # what the firmware does with a bad checksum
            return
        if "^" not in line and "*" not in line:
            self._send("$NK")  # we insist on checksums, as a careful firmware build does
            return
        self.received.append(" ".join([msg.kind, *msg.params]))
        self.activity.set()
        self._advance()
        ok, params = self._command(msg.kind, msg.params)
        seq = f" :{msg.seq:02X}" if msg.seq is not None else ""
        body = f"${'OK' if ok else 'NK'}{''.join(' ' + p for p in params)}{seq}"
        self._send(body)

    # --- the EVSE -------------------------------------------------------------------------------
    def _command(self, cmd: str, args: list[str]) -> tuple[bool, list[str]]:
        drawing = self.current_ma()
        handlers = {
            "GV": lambda: (True, [self.firmware, "5.2.1"]),
            "GC": lambda: (True, [str(self.min_amps), "80", str(self.amps), str(self.max_amps)]),
            "GS": lambda: (True, [f"{self.state:02x}", "0", f"{self._pilot():02x}", "0000"]),
            "GG": lambda: (True, [str(drawing), str(self.millivolts)]),
            "GE": lambda: (True, [str(self.amps), "0201"]),
            "GU": lambda: (True, [str(int(self.watt_seconds)), str(self.wh_total)]),
            "FE": lambda: self._set_state(self._plugged_state()),
            "FS": lambda: self._set_state(SLEEPING),
            "FD": lambda: self._set_state(DISABLED),
            "FR": lambda: self._restart(),
        }
        if cmd == "SC" and args:
            return self._set_amps(args)
        handler = handlers.get(cmd)
        return handler() if handler else (False, [])

    def _set_amps(self, args: list[str]) -> tuple[bool, list[str]]:
        try:
            wanted = int(args[0])
        except ValueError:
            return False, []
        self.amps = min(max(wanted, self.min_amps), self.max_amps)
        return self.amps == wanted, [str(self.amps)]

    def _set_state(self, state: int) -> tuple[bool, list[str]]:
        if state != self.state:
            self.state = state
            self._notify()
        return True, []

    def _restart(self) -> tuple[bool, list[str]]:
        self.restart()
        return True, []

    def _pilot(self) -> int:
        if self.car_amps is None:
            return STATE_A
        return STATE_C if self.car_amps > 0 else STATE_B

    def _plugged_state(self) -> int:
        return STATE_A if self.car_amps is None else self._pilot()

    def current_ma(self) -> int:
        if self.state != STATE_C or self.car_amps is None:
            return 0
        return int(min(self.car_amps, self.amps) * 1000)

    def _advance(self) -> None:
        now = self.clock.monotonic()
        self.watt_seconds += self.current_ma() / 1000 * self.millivolts / 1000 * (now - self._last)
        self._last = now

    def _notify(self) -> None:
        self._send(f"$AT {self.state:02x} {self._pilot():02x} {self.amps} 0000")

    # --- the car and the operator ---------------------------------------------------------------
    def plug_in(self, car_amps: float = 16.0) -> None:
        self._advance()
        self.car_amps = car_amps
        if self.state not in (SLEEPING, DISABLED):
            self._set_state(self._plugged_state())

    def unplug(self) -> None:
        self._advance()
        self.car_amps = None
        self.wh_total += int(self.watt_seconds / 3600)
        self.watt_seconds = 0.0
        if self.state not in (SLEEPING, DISABLED):
            self._set_state(STATE_A)

    def restart(self) -> None:
        """A reboot: volatile settings are gone; $AB tells the host."""
        self.amps = self.max_amps
        self.state = self._plugged_state()
        self._send(f"$AB 00 {self.firmware}")
