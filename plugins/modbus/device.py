"""One configured Modbus device: polls its profile's registers on the hub clock and judges them.

Link failures make every value unavailable; a bad value (NaN, a "no value" marker, out of range,
an implausible jump) makes only that value unavailable. Each change is logged once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plugins.modbus import sunspec
from plugins.modbus.codec import NotAvailable, ValueSpec, decode, encode, raw_value
from plugins.modbus.link import ILLEGAL_ADDRESS, DeviceError, Link, LinkError
from plugins.modbus.plan import Block, plan_blocks, split
from plugins.modbus.profile import Profile, Register, bounds, max_rate

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)
_SF = ValueSpec("int16")
MAX_DEVICE_BACKOFF = 60.0  # s between attempts at a device that keeps failing


@dataclass(slots=True)
class Accepted:
    value: float | str
    at: float  # hub monotonic seconds


class ModbusDevice:
    """Polls one unit id behind a link; entities read `values` and `available(key)`."""

    def __init__(self, hub: Hub, link: Link, conf: dict[str, Any], profile: Profile) -> None:
        self.hub = hub
        self.link = link
        self.conf = conf
        self.name: str = conf["name"]
        self.unit: int = conf["unit_id"]
        self.interval: float = conf["interval"]
        self.template = profile  # as configured; SunSpec resolves it at the found address
        self.profile: Profile | None = None if profile.sunspec else profile
        self.blocks: list[Block] = self._plan() if self.profile else []
        self.values: dict[str, float | str] = {}
        self.value_errors: dict[str, str] = {}
        self.info: dict[str, Any] = {}
        self.online = False
        self.error: str | None = "not polled yet"
        self.offline_since: float | None = None
        self._accepted: dict[str, Accepted] = {}
        self._pending: dict[str, Accepted] = {}
        self._failures = 0
        self._skip_until = 0.0
        self._timer: Timer | None = None
        self._polling = False
        self._listeners: list[Callable[[], None]] = []
        self.polls = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def start(self) -> None:
        self._timer = self.hub.clock.call_later(0, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        self._timer = self.hub.clock.call_later(self.interval, self._tick)
        if not self._polling:
            self.hub.create_task(self.poll(), f"modbus poll {self.name}", background=True)

    def available(self, key: str) -> bool:
        return self.online and key in self.values and key not in self.value_errors

    def register(self, key: str) -> Register | None:
        return self.profile.registers.get(key) if self.profile else None

    # --- one poll ------------------------------------------------------------------------------
    async def poll(self) -> None:
        now = self.hub.clock.monotonic()
        if self._polling or now < self._skip_until:
            return
        self._polling = True
        try:
            if self.profile is None:
                self.profile, self.info = await sunspec.discover(
                    self.link, self.unit, self.template
                )
                self.blocks = self._plan()
            words: dict[str, list[int]] = {}
            for block in list(self.blocks):
                await self._read(block, words)
        except LinkError as err:
            self._failed(err)
        else:
            self._judge(words)
            self._succeeded()
        finally:
            self._polling = False
            self.polls += 1
        for callback in self._listeners:
            callback()

    def _plan(self) -> list[Block]:
        assert self.profile is not None
        return plan_blocks(
            self.profile.registers.values(),
            max_registers=self.profile.max_registers,
            max_gap=self.profile.max_gap,
        )

    async def _read(self, block: Block, words: dict[str, list[int]]) -> None:
        assert self.profile is not None
        regs = self.profile.registers
        try:
            data = await self.link.read(block.function, block.address, block.count, self.unit)
        except DeviceError as err:
            if err.exception_code != ILLEGAL_ADDRESS:
                raise
            parts = split(block, dict(regs))
            if parts == [block]:
                # A register this unit does not have: that value is unavailable, not the device.
                key = block.keys[0]
                self.blocks.remove(block)
                self._value_error(key, "the device has no such register (illegal data address)")
                return
            _LOGGER.info(
                "%s: refuses reading %d registers at %d in one request; reading in %d parts",
                self.name, block.count, block.address, len(parts),
            )  # fmt: skip
            index = self.blocks.index(block)
            self.blocks[index : index + 1] = parts
            for part in parts:
                await self._read(part, words)
            return
        for key in block.keys:
            reg = regs[key]
            words[key] = data[reg.address - block.address : reg.end - block.address]

    # --- judging values ------------------------------------------------------------------------
    def _judge(self, words: dict[str, list[int]]) -> None:
        assert self.profile is not None
        now = self.hub.clock.monotonic()
        for key, reg in self.profile.registers.items():
            if key not in words:
                continue
            try:
                exponent = self._exponent(reg, words)
                value = decode(reg.spec, words[key], exponent)
            except NotAvailable as err:
                self._value_error(key, f"the device reports no value ({err})")
                continue
            except ValueError as err:
                self._value_error(key, str(err))
                continue
            problem = None if isinstance(value, str) else self._implausible(reg, value, now)
            if problem:
                self._value_error(key, problem)
                continue
            self.values[key] = value
            self._accepted[key] = Accepted(value, now)
            self._pending.pop(key, None)
            if self.value_errors.pop(key, None) is not None:
                _LOGGER.info("%s: %s is valid again (%s)", self.name, key, value)

    def _exponent(self, reg: Register, words: dict[str, list[int]]) -> int:
        if not reg.scale_factor:
            return 0
        sf_words = words.get(reg.scale_factor)
        if sf_words is None:
            raise NotAvailable(f"scale factor {reg.scale_factor} was not read")
        sf = int(raw_value(_SF, sf_words))
        if sf == -32768:
            raise NotAvailable(f"scale factor {reg.scale_factor} not implemented")
        if not -10 <= sf <= 10:
            raise ValueError(f"scale factor {reg.scale_factor} = {sf} is implausible")
        return sf

    def _implausible(self, reg: Register, value: float, now: float) -> str | None:
        unit = f" {reg.unit}" if reg.unit else ""
        if not math.isfinite(value):
            return f"{value}{unit} is not a number a meter can measure"
        low, high = bounds(reg)
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{value:g}{unit} is outside the plausible range {low:g}..{high:g}{unit}"
        rate = max_rate(reg)
        last = self._accepted.get(reg.key)
        if last is None or rate is None or isinstance(last.value, str):
            return None
        if _consistent(last, value, now, rate, reg):
            return None
        # One odd reading is a glitch; the same new level twice in a row is real (a meter
        # was replaced or reset), and is then accepted.
        pending = self._pending.get(reg.key)
        if pending is not None and _consistent(pending, value, now, rate, reg):
            _LOGGER.warning(
                "%s: %s moved from %g to %g%s and stayed there; accepting the new level",
                self.name, reg.key, last.value, value, unit,
            )  # fmt: skip
            return None
        self._pending[reg.key] = Accepted(value, now)
        if reg.device_class == "energy" and value < float(last.value):
            return f"energy register went backwards from {last.value:g} to {value:g}{unit}"
        return f"implausible jump from {last.value:g} to {value:g}{unit} in {now - last.at:g} s"

    def _value_error(self, key: str, reason: str) -> None:
        old = self.value_errors.get(key)
        self.value_errors[key] = reason
        if old is None:
            _LOGGER.warning("%s: %s unavailable: %s", self.name, key, reason)
        elif old != reason:
            _LOGGER.debug("%s: %s still unavailable: %s", self.name, key, reason)

    # --- device state transitions ---------------------------------------------------------------
    def _failed(self, err: LinkError) -> None:
        now = self.hub.clock.monotonic()
        if isinstance(err, DeviceError):
            self._failures += 1
            delay = min(MAX_DEVICE_BACKOFF, self.interval * 2 ** (self._failures - 1))
            # The poll timer already waits one interval; back off beyond that.
            self._skip_until = now + delay - self.interval
        first = self.error == "not polled yet"
        if self.online or first:
            _LOGGER.warning("modbus device %s unavailable: %s", self.name, err.reason)
        elif err.reason != self.error:
            _LOGGER.debug("modbus device %s still unavailable: %s", self.name, err.reason)
        self.online = False
        if self.offline_since is None:
            self.offline_since = now
        self.error = err.reason

    def _succeeded(self) -> None:
        if not self.online:
            down = (
                f" after {self.hub.clock.monotonic() - self.offline_since:.0f} s"
                if self.offline_since is not None
                else ""
            )
            _LOGGER.info("modbus device %s online%s", self.name, down)
        self.online, self.error, self.offline_since = True, None, None
        self._failures, self._skip_until = 0, 0.0

    # --- writing -------------------------------------------------------------------------------
    async def write(self, key: str, value: float, function: int | None = None) -> None:
        """Encode `value` with the register's type and scale and write it; raises LinkError."""
        reg = self.register(key)
        if reg is None:
            raise DeviceError(f"{self.name} has no register {key!r}")
        try:
            words = encode(reg.spec, value)
        except ValueError as err:
            raise DeviceError(f"cannot write {value} to {key}: {err}") from None
        fc = function or (6 if len(words) == 1 else 16)
        await self.link.write(reg.address, words, self.unit, fc)

    def status(self) -> dict[str, Any]:
        return {
            "online": self.online,
            "error": self.error,
            "link": self.link.name,
            "unit_id": self.unit,
            "profile": self.template.name,
            "values": dict(self.values),
            "value_errors": dict(self.value_errors),
            **self.info,
        }


def _consistent(ref: Accepted, value: float, now: float, rate: float, reg: Register) -> bool:
    tolerance = 1e-6 * max(abs(float(ref.value)), 1.0)
    delta = value - float(ref.value)
    if reg.device_class == "energy" and delta < -tolerance:
        return False
    return abs(delta) <= rate * max(now - ref.at, 1.0) + tolerance
