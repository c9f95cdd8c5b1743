"""A simulated Modbus device: pymodbus' own server answering like a profile says, for the demo
and the tests. Values come from a callback, encoded with the profile's types, scales and orders.

`fault` makes it misbehave the ways field devices do: "exception", "silent", "garbage", "crc".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plugins.modbus.codec import decode, encode, encode_raw
from plugins.modbus.profile import Profile, Register

_LOGGER = logging.getLogger(__name__)

Values = Mapping[str, float | str | None]
SUNSPEC_COMMON_LENGTH = 66
FAULTS = (None, "exception", "silent", "garbage", "crc")


_LIMIT = {"int16": 32767, "uint16": 65535, "int32": 2**31 - 1, "uint32": 2**32 - 1}


def _exponent(values: list[tuple[float, str]]) -> int:
    """The smallest power of ten that keeps every value sharing a scale factor within its type."""
    for exp in range(-3, 10):
        if all(abs(v) / 10.0**exp <= _LIMIT.get(t, 32767) for v, t in values):
            return exp
    return 9


def encode_values(profile: Profile, values: Values) -> dict[str, dict[int, int]]:
    """{"holding"|"input": {address: word}} holding `values` (None: the register's 'no value')."""
    words: dict[str, dict[int, int]] = {"holding": {}, "input": {}}
    regs = profile.registers
    exps: dict[str, int] = {}
    for reg in regs.values():
        if reg.scale_factor and reg.scale_factor not in exps:
            shared = [
                (float(v), r.spec.type)
                for r in regs.values()
                if r.scale_factor == reg.scale_factor
                and isinstance(v := values.get(r.key), int | float)
            ]
            exps[reg.scale_factor] = _exponent(shared) if shared else 0
    for key, reg in regs.items():
        if key in exps:
            encoded = encode(reg.spec, exps[key])
        elif key not in values or values[key] is None:
            if not reg.spec.not_available:
                continue
            encoded = encode_raw(reg.spec, reg.spec.not_available[0])
        else:
            encoded = encode(reg.spec, values[key], exps.get(reg.scale_factor or "", 0))  # type: ignore[arg-type]
        for i, word in enumerate(encoded):
            words[reg.function][reg.address + i] = word
    return words


def sunspec_words(
    template: Profile, values: Values, *, model: int, base: int = 40000,
    common: Mapping[str, str] | None = None,
) -> dict[int, int]:  # fmt: skip
    """Holding registers of a SunSpec device: marker, common model, the meter model, end."""
    assert template.sunspec is not None
    out: dict[int, int] = {base: 0x5375, base + 1: 0x6E53}
    address = base + 2
    out[address], out[address + 1] = 1, SUNSPEC_COMMON_LENGTH
    for key, reg in template.sunspec.common.items():
        text = (common or {}).get(key)
        for i, word in enumerate(encode(reg.spec, text or "") if reg.spec.type == "string" else []):
            out[address + reg.address + i] = word
    for i in range(2, SUNSPEC_COMMON_LENGTH + 2):
        out.setdefault(address + i, 0)
    address += 2 + SUNSPEC_COMMON_LENGTH
    length = max(r.end for r in template.registers.values()) - 2
    placed = template.at(address)
    body = encode_values(placed, values)["holding"]
    out.update({address + i: 0 for i in range(length + 2)})
    out.update(body)
    out[address], out[address + 1] = model, length
    address += 2 + length
    out[address], out[address + 1] = 0xFFFF, 0
    return out


class SimulatedDevice:
    """One unit id on a pymodbus server whose registers follow `values()` at every read."""

    def __init__(
        self,
        profile: Profile,
        values: Callable[[], Values],
        *,
        unit_id: int = 1,
        sunspec_model: int = 203,
        sunspec_base: int = 40000,
        common: Mapping[str, str] | None = None,
        pad_gaps: int = 0,
    ) -> None:
        self.profile = profile
        self.pad_gaps = pad_gaps
        self.values = values
        self.unit_id = unit_id
        self.sunspec = (sunspec_model, sunspec_base) if profile.sunspec else None
        self.common = common
        self.fault: str | None = None
        self.writes: dict[str, float | str] = {}
        self.on_write: Callable[[str, float | str], None] | None = None
        self.reads = 0
        self.bus: SimulatedBus | None = None
        self.port: int | None = None
        self._release = asyncio.Event()
        self._layout = self._pad(self._words())  # which addresses exist; fixed for its life

    def _words(self) -> dict[str, dict[int, int]]:
        values = self.values()
        if self.sunspec is not None:
            model, base = self.sunspec
            return {
                "holding": sunspec_words(
                    self.profile, values, model=model, base=base, common=self.common
                ),
                "input": {},
            }
        return encode_values(self.profile, values)

    def _pad(self, layout: dict[str, dict[int, int]]) -> dict[str, dict[int, int]]:
        """A real meter has registers between the profile's (other quantities): answer those with
        0 across gaps up to `pad_gaps`, so merged reads work as on the device. 0: strict."""
        for words in layout.values():
            addresses = sorted(words)
            for a, b in itertools.pairwise(addresses):
                if 1 < b - a <= self.pad_gaps + 1:
                    words.update({x: 0 for x in range(a + 1, b)})
        return layout

    # --- the pymodbus datastore ----------------------------------------------------------------
    def device(self) -> SimDevice:
        def blocks(words: dict[int, int]) -> list[SimData]:
            if not words:
                return [SimData(0, datatype=DataType.INVALID)]
            out, run = [], [min(words)]
            for address in sorted(words)[1:]:
                if address != run[-1] + 1:
                    out.append(SimData(run[0], values=[words[a] for a in run],
                                       datatype=DataType.REGISTERS))  # fmt: skip
                    run = []
                run.append(address)
            out.append(SimData(run[0], values=[words[a] for a in run], datatype=DataType.REGISTERS))
            return out

        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        simdata = (bits, list(bits), blocks(self._layout["holding"]), blocks(self._layout["input"]))
        return SimDevice(self.unit_id, simdata=simdata, action=self._action)

    async def _action(
        self, function_code: int, start: int, address: int, count: int,
        registers: list[int], set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:  # fmt: skip
        if self.fault == "exception":
            return ExcCodes.DEVICE_FAILURE
        if self.fault == "silent":
            await self._release.wait()  # answers only once the fault is cleared (a late answer)
            self._release.clear()
        if set_values is not None:
            return self._written(address, [int(v) for v in set_values])
        self.reads += 1
        function = "input" if function_code == 4 else "holding"
        current = self._words()[function]
        for addr in range(address, address + count):
            if addr in current and 0 <= addr - start < len(registers):
                registers[addr - start] = current[addr]
        return None

    def _written(self, address: int, words: list[int]) -> ExcCodes | None:
        for reg in self.profile.registers.values():
            if reg.function == "holding" and reg.address == address:
                if len(words) != reg.spec.registers:
                    return ExcCodes.ILLEGAL_VALUE  # a multi-register value is written whole
                value = decode(reg.spec, words)
                self.writes[reg.key] = value
                if self.on_write is not None:
                    self.on_write(reg.key, value)
                return None
        return ExcCodes.ILLEGAL_ADDRESS

    def set_fault(self, fault: str | None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.fault = fault
        if fault != "silent":
            self._release.set()

    def corrupt(self, data: bytes) -> bytes:
        """An answer as a faulty device (or cable) puts it on the wire."""
        if self.fault == "garbage":
            return bytes((b * 7 + 13) & 0xFF for b in data)
        if self.fault == "crc":
            return data[:-1] + bytes([data[-1] ^ 0x5A])
        return data

    # --- serving ------------------------------------------------------------------------------
    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.bus = SimulatedBus([self])
        self.port = await self.bus.start_tcp(host, port)
        return self.port

    async def start_serial(self, port: str, **line: Any) -> None:
        self.bus = SimulatedBus([self])
        await self.bus.start_serial(port, **line)

    async def stop(self) -> None:
        self._release.set()
        if self.bus is not None:
            await self.bus.stop()
            self.bus = None


class SimulatedBus:
    """One pymodbus server (TCP or serial) for several simulated units, as on an RS485 line."""

    def __init__(self, devices: list[SimulatedDevice]) -> None:
        self.devices = {d.unit_id: d for d in devices}
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self._serial = False

    def _trace(self, sending: bool, data: bytes) -> bytes:
        # The unit id leads an RTU frame and follows the 6-byte MBAP header of a TCP one.
        at = 0 if self._serial else 6
        device = self.devices.get(data[at]) if sending and len(data) > at else None
        return device.corrupt(data) if device is not None else data

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        devices = [d.device() for d in self.devices.values()]
        server = ModbusTcpServer(devices, address=(host, port), trace_packet=self._trace)
        await server.serve_forever(background=True)
        self.server = server
        sockets = getattr(server.transport, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def start_serial(self, port: str, **line: Any) -> None:
        self._serial = True
        devices = [d.device() for d in self.devices.values()]
        server = ModbusSerialServer(
            devices, port=port, trace_packet=self._trace, reconnect_delay=0, **line
        )
        await server.serve_forever(background=True)
        self.server = server

    async def stop(self) -> None:
        for device in self.devices.values():
            device._release.set()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.shutdown()
            self.server = None


def sample_values(profile: Profile) -> dict[str, float | str]:
    """Plausible readings for every register of a profile (tests, `make demo`)."""
    typical = {"voltage": 231.4, "current": 12.35, "power": 2856.0, "frequency": 50.01,
               "power_factor": 0.97, "temperature": 31.5}  # fmt: skip
    out: dict[str, float | str] = {}
    for key, reg in profile.registers.items():
        out[key] = _typical(key, reg, typical)
    return out


def _typical(key: str, reg: Register, typical: Mapping[str, float]) -> float | str:
    if reg.spec.type == "string":
        return "B2"
    if reg.device_class == "energy":
        return 12345.6 if (reg.unit or "kWh") == "kWh" else 12_345_600.0
    base = reg.device_class or ""
    value = typical.get(base, 1.0)
    if base == "power" and reg.unit == "kW":
        value /= 1000
    if base == "power_factor" and reg.unit == "%":
        value *= 100
    phase = key[-1] if key[-3:-1] == "_l" else "0"
    return round(value * (1 + 0.01 * int(phase)), 2) if phase.isdigit() else value
