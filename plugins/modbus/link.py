"""One Modbus connection (a TCP endpoint or a serial port) shared by every device behind it.

A lock puts one request at a time on the wire (an RTU bus is half duplex); timeouts and the
reconnect back-off run on the hub clock. Errors come out as `LinkDown` or `DeviceError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from hub.clock import with_timeout

if TYPE_CHECKING:
    from hub.clock import Clock

_LOGGER = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
ILLEGAL_ADDRESS = 2


class LinkError(Exception):
    """A request failed; `reason` is what the log and the device status show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LinkDown(LinkError):
    """No connection: every device behind this link is unreachable."""


class DeviceError(LinkError):
    """The link works, but this device gave no usable answer."""

    def __init__(self, reason: str, exception_code: int | None = None) -> None:
        super().__init__(reason)
        self.exception_code = exception_code


class Link:
    """A pymodbus async client plus what keeps it well behaved on a shared wire."""

    def __init__(
        self,
        clock: Clock,
        conf: dict[str, Any],
        *,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.clock = clock
        self.conf = conf
        self.serial = "serial_port" in conf
        self.name = conf["serial_port"] if self.serial else f"{conf['host']}:{conf['port']}"
        self.lock = asyncio.Lock()
        self.client: ModbusBaseClient | None = None
        self._backoff_min, self._backoff_max = backoff
        self._delay = 0.0
        self._retry_at = 0.0  # hub monotonic seconds
        self.last_error: str | None = None
        self._rx_bytes = 0  # bytes received since the last request went out
        self._current: asyncio.Task[Any] | None = None
        self._lost = False
        self.busy = 0
        self.requests = 0  # requests put on the wire: a waiter tells a new one from a hung one
        self.idle = asyncio.Event()
        self.idle.set()

    # --- the client ------------------------------------------------------------------------
    def _make_client(self) -> ModbusBaseClient:
        c = self.conf
        framer = FramerType(c.get("framer", "rtu" if self.serial else "socket"))
        common: dict[str, Any] = {
            "framer": framer,
            # pymodbus' own timeout runs on loop time: only a backstop behind ours (hub clock).
            "timeout": 3 * c["timeout"] + 2,
            "retries": 0,  # retries and back-off are ours, on the hub clock
            "reconnect_delay": 0,  # no reconnect loop of its own in real time
            "name": self.name,
            "trace_packet": self._trace_packet,
            "trace_pdu": self._trace_pdu,
            "trace_connect": self._trace_connect,
        }
        if self.serial:
            return AsyncModbusSerialClient(
                c["serial_port"],
                baudrate=c["baudrate"],
                parity=c["parity"],
                stopbits=c["stopbits"],
                bytesize=c["bytesize"],
                **common,
            )
        return AsyncModbusTcpClient(c["host"], port=c["port"], **common)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._rx_bytes = 0
        else:
            self._rx_bytes = len(data)
        return data

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self._rx_bytes = 0  # a whole frame was understood: nothing unreadable is pending
        return pdu

    def _trace_connect(self, connected: bool) -> None:
        # A device unplugged mid-read: fail the request now instead of waiting for its timeout.
        if not connected and self._current is not None and not self._current.done():
            self._lost = True
            self._current.cancel()

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def _connect(self) -> None:
        now = self.clock.monotonic()
        if now < self._retry_at:
            wait = self._retry_at - now
            raise LinkDown(f"{self.last_error}; next attempt in {wait:.0f} s")
        self.close()
        client = self._make_client()
        try:
            ok = await with_timeout(self.clock, client.connect(), self.conf["timeout"])
        except (TimeoutError, OSError, ModbusException) as err:
            ok, detail = False, str(err) or type(err).__name__
        else:
            detail = "connection refused or port unavailable"
        if not ok or not client.connected:
            client.close()
            self._delay = min(self._backoff_max, max(self._backoff_min, self._delay * 2))
            self._retry_at = self.clock.monotonic() + self._delay
            what = "open serial port" if self.serial else "connect to"
            self.last_error = f"cannot {what} {self.name}: {detail}"
            raise LinkDown(self.last_error)
        self.client, self._delay, self.last_error = client, 0.0, None
        _LOGGER.debug("connected to %s", self.name)

    # --- requests ----------------------------------------------------------------------------
    async def request(
        self, op: Callable[[ModbusBaseClient], Awaitable[ModbusPDU]], what: str
    ) -> ModbusPDU:
        """Run one request under the lock with the hub-clock timeout; map every failure."""
        self.busy += 1
        self.idle.clear()
        try:
            async with self.lock:
                self.requests += 1
                if not self.connected:
                    await self._connect()
                assert self.client is not None
                return await self._run(self.client, op, what)
        finally:
            self.busy -= 1
            if not self.busy:
                self.idle.set()

    async def _run(
        self, client: ModbusBaseClient, op: Callable[[ModbusBaseClient], Awaitable[ModbusPDU]],
        what: str,
    ) -> ModbusPDU:  # fmt: skip
        self._lost, self._rx_bytes = False, 0
        self._current = asyncio.ensure_future(op(client))
        try:
            response = await with_timeout(self.clock, self._current, self.conf["timeout"])
        except asyncio.CancelledError:
            if not self._lost:
                raise
            self.close()
            raise LinkDown(f"connection to {self.name} lost during {what}") from None
        except (TimeoutError, ModbusException) as err:
            if isinstance(err, ModbusException) and not self.connected:
                self.close()
                raise LinkDown(f"connection to {self.name} lost during {what}") from None
            heard = self._rx_bytes
            if not self.serial:
                # A TCP peer that stopped answering is often a hung session; a new one is cheap.
                # On a serial bus the other devices still answer: keep the port open.
                self.close()
            if heard:
                raise DeviceError(
                    f"unreadable answer to {what} ({heard} bytes: bad CRC, garbage or "
                    f"wrong framing)"
                ) from None
            detail = err if isinstance(err, TimeoutError) else f"no valid answer ({err})"
            raise DeviceError(f"{what}: {detail}") from None
        finally:
            self._current = None
        if response.isError():
            code = getattr(response, "exception_code", 0)
            name = EXCEPTION_NAMES.get(code, "unknown")
            raise DeviceError(f"{what}: exception response {code} ({name})", code)
        return response

    async def read(self, function: str, address: int, count: int, unit: int) -> list[int]:
        what = f"reading {count} {function} register(s) at {address} from unit {unit}"

        def op(c: ModbusBaseClient) -> Awaitable[ModbusPDU]:
            if function == "input":
                return c.read_input_registers(address, count=count, device_id=unit)
            return c.read_holding_registers(address, count=count, device_id=unit)

        response = await self.request(op, what)
        words = list(getattr(response, "registers", []) or [])
        if len(words) != count:
            # A stale answer to an earlier request on a serial line can look valid.
            raise DeviceError(f"{what}: answer holds {len(words)} registers, not {count}")
        return words

    async def write(self, address: int, words: list[int], unit: int, function: int) -> None:
        what = f"writing {len(words)} register(s) at {address} to unit {unit}"

        def op(c: ModbusBaseClient) -> Awaitable[ModbusPDU]:
            if function == 6 and len(words) == 1:
                return c.write_register(address, words[0], device_id=unit)
            return c.write_registers(address, words, device_id=unit)

        await self.request(op, what)
