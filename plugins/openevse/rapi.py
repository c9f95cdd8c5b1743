"""The OpenEVSE RAPI serial protocol: frames, checksums, sequence ids, one command at a time.

>>> frame("GS")
b'$GS^30\\r'
>>> frame("SC 16 V", seq=0x2A)
b'$SC 16 V :2A^0C\\r'
>>> parse("$OK 3 1234 3 0200^26")
Message(kind='OK', params=['3', '1234', '3', '0200'], seq=None)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING

import serial
import serial_asyncio

from hub.clock import with_timeout

if TYPE_CHECKING:
    from hub.clock import Clock

_LOGGER = logging.getLogger(__name__)

NOTIFICATIONS = {"AT", "AB", "AN", "WF", "ST"}  # sent by the EVSE on its own
MAX_LINE = 128


class RapiError(Exception):
    """A command got no usable answer; `reason` is what the log and the entity show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RapiLost(RapiError):
    """The serial port is gone (unplugged, closed)."""


class RapiRejected(RapiError):
    """The EVSE answered $NK; `params` holds what it said."""

    def __init__(self, command: str, params: list[str]) -> None:
        super().__init__(f"${command} refused ($NK {' '.join(params)})".strip())
        self.params = params


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # "OK", "NK" or a notification such as "AT"
    params: list[str]
    seq: int | None = None


def xor_checksum(text: str) -> int:
    return reduce(lambda a, b: a ^ b, text.encode("latin-1"), 0)


def frame(command: str, seq: int | None = None) -> bytes:
    """`$cc pp ..[ :ss]^xk\\r`: XOR checksum of everything before '^'."""
    body = f"${command}" + (f" :{seq:02X}" if seq is not None else "")
    return f"{body}^{xor_checksum(body):02X}\r".encode("latin-1")


def parse(line: str) -> Message:
    """One line from the EVSE; raises RapiError for a bad checksum or something not RAPI."""
    line = line.strip("\r\n\0 ")
    if not line.startswith("$") or len(line) < 3:
        raise RapiError(f"not a RAPI message: {line[:40]!r}")
    body = line
    if "^" in line:
        body, _, check = line.rpartition("^")
        if not _hex(check) or int(check, 16) != xor_checksum(body):
            raise RapiError(f"bad checksum in {line[:40]!r}")
    elif "*" in line:  # the legacy additive checksum
        body, _, check = line.rpartition("*")
        if not _hex(check) or int(check, 16) != sum(body.encode("latin-1")) & 0xFF:
            raise RapiError(f"bad checksum in {line[:40]!r}")
    tokens = body[1:].split()
    if not tokens or not tokens[0].isalnum():
        raise RapiError(f"not a RAPI message: {line[:40]!r}")
    seq = None
    if len(tokens) > 1 and tokens[-1].startswith(":") and _hex(tokens[-1][1:]):
        seq = int(tokens.pop()[1:], 16)
    return Message(tokens[0], tokens[1:], seq)


def _hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


class RapiLink:
    """A serial port speaking RAPI; `command()` sends one command and returns its parameters."""

    def __init__(
        self,
        clock: Clock,
        port: str,
        *,
        baudrate: int = 115200,
        timeout: float = 2.0,
        sequence_ids: bool = False,
        on_notify: Callable[[Message], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.clock = clock
        self.port = port
        self.baudrate = baudrate
        self.timeout = timeout
        self.sequence_ids = sequence_ids
        self.on_notify = on_notify
        self.on_lost = on_lost
        self._lock = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: asyncio.Future[Message] | None = None
        self._seq = 0
        self.garbage = 0  # lines that were not RAPI, for diagnostics

    @property
    def open(self) -> bool:
        return self._writer is not None

    async def connect(self) -> None:
        try:
            reader, writer = await with_timeout(
                self.clock,
                serial_asyncio.open_serial_connection(url=self.port, baudrate=self.baudrate),
                self.timeout,
            )
        except (OSError, serial.SerialException, TimeoutError) as err:
            raise RapiLost(f"cannot open {self.port}: {err}") from None
        self._writer = writer
        self._reader_task = asyncio.ensure_future(self._read_loop(reader))

    async def close(self) -> None:
        writer, task = self._writer, self._reader_task
        self._writer, self._reader_task = None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        self._fail(RapiLost(f"{self.port} closed"))

    def _fail(self, err: RapiError) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(err)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        reason = "end of stream"
        try:
            while True:
                raw = await reader.readuntil(b"\r")
                self._line(raw[-MAX_LINE:].decode("latin-1"))
        except asyncio.CancelledError:
            raise
        except asyncio.LimitOverrunError:
            reason = "a line too long to be RAPI"
        except (asyncio.IncompleteReadError, OSError, serial.SerialException) as err:
            reason = str(err) or type(err).__name__
        # The port went away under us (unplugged, or the other end closed).
        self._writer = None
        self._fail(RapiLost(f"{self.port} lost: {reason}"))
        if self.on_lost is not None:
            self.on_lost(reason)

    def _line(self, text: str) -> None:
        # Anything before the last '$' is line noise (a partial frame, bytes after a reset).
        start = text.rfind("$")
        if start < 0:
            if text.strip():
                self.garbage += 1
                self._fail(RapiError(f"garbage on the line: {text.strip()[:40]!r}"))
            return
        try:
            msg = parse(text[start:])
        except RapiError as err:
            self.garbage += 1
            self._fail(err)
            return
        if msg.kind in NOTIFICATIONS:
            if self.on_notify is not None:
                self.on_notify(msg)
            return
        if self._pending is None or self._pending.done():
            _LOGGER.debug("%s: answer nobody waits for: %s", self.port, msg)
            return
        if self.sequence_ids and msg.seq is not None and msg.seq != self._seq:
            _LOGGER.debug("%s: stale answer (seq %s, want %s)", self.port, msg.seq, self._seq)
            return
        self._pending.set_result(msg)

    async def command(self, command: str) -> list[str]:
        """Send `command` (e.g. "SC 16 V"); the parameters of $OK, or RapiRejected for $NK."""
        async with self._lock:
            if self._writer is None:
                raise RapiLost(f"{self.port} is not open")
            seq = None
            if self.sequence_ids:
                self._seq = self._seq % 254 + 1  # 00 is reserved as "no sequence id"
                seq = self._seq
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            try:
                self._writer.write(frame(command, seq))
                msg = await with_timeout(self.clock, self._pending, self.timeout)
            except TimeoutError:
                raise RapiError(f"${command}: no answer within {self.timeout:g} s") from None
            except (OSError, serial.SerialException) as err:
                raise RapiLost(f"{self.port}: {err}") from None
            finally:
                self._pending = None
        if msg.kind == "NK":
            raise RapiRejected(command.split()[0], msg.params)
        if msg.kind != "OK":
            raise RapiError(f"${command}: unexpected answer ${msg.kind}")
        return msg.params
