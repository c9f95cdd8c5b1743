"""The wire under a simulated charger: websocket adapter for the ocpp library and a durable outbox.

Outbound calls run one at a time from the outbox, never from a handler (the library deadlocks).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, MessageType, _validate_payload
from ocpp.routing import after

from hub.clock import Clock

_LOGGER = logging.getLogger(__name__)
MAX_QUEUED = 5000  # messages a charger keeps while offline (real ones: a few thousand)
SETTLE_TIMEOUT = 2.0  # real seconds the reader waits for an answer to be processed


class QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The ocpp library logs every frame at INFO; with thousands of chargers that is DEBUG."""

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        # A CSMS asking what the simulator does not do is worth a line, not a traceback; the
        # library answers it with a CALLERROR anyway. Tracebacks come with DEBUG.
        error = sys.exc_info()[1]
        kwargs["exc_info"] = self.isEnabledFor(logging.DEBUG)
        self.warning(f"{msg}: %s", *args, error, **kwargs)


WIRE = QuietLogger(logging.getLogger("plugins.simulator.wire"), {})


class Closed(ConnectionError):
    """The websocket closed; raised from recv() so the library's start() loop ends."""


class WsConnection:
    """The send(str)/recv() -> str interface the ocpp library expects, over aiohttp."""

    __slots__ = ("ws",)

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: str) -> None:
        await self.ws.send_str(message)

    async def recv(self) -> str:
        msg = await self.ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            return str(msg.data)
        if msg.type is aiohttp.WSMsgType.BINARY:  # OCPP-J is text; be lenient with a peer
            return bytes(msg.data).decode("utf-8", "replace")
        raise Closed(f"websocket {msg.type.name.lower()}")


Message = tuple[str, dict[str, Any]]  # (action, camelCase payload as it goes on the wire)


@dataclass(slots=True)
class Outgoing:
    """A message to send: built when its turn comes (a 1.6 transactionId may arrive meanwhile)."""

    build: Callable[[], Message | None]  # None: nothing to send any more
    done: Callable[[Any], None] | None = None
    durable: bool = False  # transaction messages survive a disconnect and are replayed in order
    fail: Callable[[], None] | None = None  # dropped unanswered (offline, CALLERROR)
    periodic: bool = False  # a periodic meter reading: the first to go when memory is full


@dataclass(slots=True)
class LinkStats:
    sent: int = 0
    errors: int = 0
    dropped: int = 0


@dataclass(slots=True)
class Outbox:
    """FIFO of outgoing messages with at most one sender task, alive only while there is work."""

    name: str
    spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]
    clock: Clock
    validate: bool = False
    queue: deque[Outgoing] = field(default_factory=deque)
    stats: LinkStats = field(default_factory=LinkStats)
    peer: Any = None  # the library ChargePoint while the charger is accepted, else None
    on_empty: Callable[[], None] | None = None
    _task: asyncio.Task[Any] | None = None
    _busy: bool = False  # a call is in flight
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)

    async def settled(self) -> None:
        """Wait until the answer to the call in flight has been processed.

        The library hands answers to the waiting caller through a queue and reads the next
        frame at once; a CSMS call right behind StartTransaction.conf would otherwise find
        no transactionId yet. A charger handles the conf first: so do we.
        """
        if not self._busy:
            return
        # A bare future, not wait_for: Python 3.11's wait_for loses a cancellation that
        # arrives together with the result, and the reader would read on after stop().
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        # A stale answer (its caller timed out) is never processed: do not wait forever.
        timeout = asyncio.get_running_loop().call_later(SETTLE_TIMEOUT, _resolve, waiter)
        try:
            await waiter
        finally:
            timeout.cancel()

    def _idle(self) -> None:
        self._busy = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            _resolve(waiter)

    def put(self, item: Outgoing) -> None:
        if self.peer is None and not item.durable:
            self.stats.dropped += 1
            if item.fail is not None:
                item.fail()
            return
        self.queue.append(item)
        if len(self.queue) > MAX_QUEUED:
            self._shed()
        self.kick()

    def _shed(self) -> None:
        """Offline for very long: forget the oldest periodic reading, keep starts and stops."""
        for i, queued in enumerate(self.queue):
            if queued.periodic and i > 0:  # the head may be in flight
                del self.queue[i]
                self.stats.dropped += 1
                return

    def kick(self) -> None:
        if self.peer is not None and self.queue and (self._task is None or self._task.done()):
            self._task = self.spawn(self._drain(self.peer), f"{self.name} outbox")

    def go_offline(self) -> None:
        """Stop sending; what is not durable is dropped now (its fail() runs)."""
        self.peer = None
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        kept: deque[Outgoing] = deque()
        for item in self.queue:
            if item.durable:
                kept.append(item)
            else:
                self.stats.dropped += 1
                if item.fail is not None:
                    _safe(item.fail)
        self.queue = kept

    def go_online(self, peer: Any) -> None:
        self.peer = peer
        self.kick()

    async def _drain(self, peer: Any) -> None:
        while self.queue and self.peer is peer:
            item = self.queue[0]
            message = item.build()
            if message is None:
                self.queue.popleft()
                continue
            action, payload = message
            self._busy = True
            try:
                result = await peer.send_call(action, payload, self.validate)
            except OCPPError as err:
                # A CALLERROR repeats on a retry; log it, count it and move on.
                self.stats.errors += 1
                _LOGGER.warning("%s: %s answered %s", self.name, action, err)
                self._settle(item, None, failed=True)
                continue
            except TimeoutError:
                self.stats.errors += 1
                _LOGGER.warning("%s: no answer to %s", self.name, action)
                if not item.durable:  # a durable message is sent again
                    self._settle(item, None, failed=True)
                continue
            except (ConnectionError, aiohttp.ClientError):
                self._idle()
                return  # the socket is going; the connection loop takes the charger offline
            except BaseException:
                self._idle()  # cancelled by go_offline
                raise
            except Exception:
                # The message went out but the answer could not be read (unexpected fields).
                self.stats.errors += 1
                _LOGGER.exception("%s: bad answer to %s", self.name, action)
                self._settle(item, None, failed=True)
                continue
            self.stats.sent += 1
            self._settle(item, result)
        if not self.queue and self.on_empty is not None and self.peer is peer:
            _safe(self.on_empty)

    def _settle(self, item: Outgoing, result: Any, *, failed: bool = False) -> None:
        # Python 3.11's wait_for (inside the library's call) can return a result although the
        # task was cancelled by go_offline meanwhile; the queue may have changed under us.
        if self.queue and self.queue[0] is item:
            self.queue.popleft()
        callback = item.fail if failed else item.done
        if callback is not None:
            _safe(callback, *(() if failed else (result,)))
        self._idle()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _safe(callback: Callable[..., Any], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        _LOGGER.exception("simulator callback %r failed", callback)


def add_followups(peer: type, actions: tuple[str, ...]) -> None:
    """One `@after` hook per handled action runs what the handler deferred until its reply."""
    for action in actions:

        def run(self: Any, **_: Any) -> None:
            self.sim.run_followups()

        run.__name__ = run.__qualname__ = f"_sim_after_{action}"
        setattr(peer, run.__name__, after(action)(run))


class OrderedPeer:
    """Mixin for the library's ChargePoint: a lean call path, answers processed in order."""

    sim: Any
    _ids = itertools.count(1)

    async def send_call(self, action: str, payload: dict[str, Any], validate: bool) -> Any:
        """Like the library's call() for a payload already in wire form (camelCase dicts).

        call() turns dataclasses into dicts (deep copies) and renames every key, twice the
        cost of the rest of a MeterValues round trip; thousands of chargers notice. Returns
        the library's call_result object; a CALLERROR raises its OCPPError.
        """
        lib: Any = self
        message = Call(unique_id=str(next(self._ids)), action=action, payload=payload)
        if validate:
            _validate_payload(message, lib._ocpp_version)
        async with lib._call_lock:
            await lib._send(message.to_json())
            response = await lib._get_specific_response(message.unique_id, lib._response_timeout)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        if validate:
            response.action = action
            _validate_payload(response, lib._ocpp_version)
        return getattr(lib._call_result, action)(**camel_to_snake_case(response.payload))

    async def route_message(self, raw_msg: str) -> None:
        await super().route_message(raw_msg)  # type: ignore[misc]
        if raw_msg.lstrip("[ \t\r\n")[:1] in ("3", "4"):  # CALLRESULT, CALLERROR
            await self.sim.outbox.settled()
