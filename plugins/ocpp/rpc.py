"""OCPP-J framing for one connection: checks every frame before anything trusts it, validates
payloads with compiled schemas, dispatches CALLs and matches our outbound CALLs to their answers.

The `ocpp` library supplies the schemas; its ChargePoint class is not used on the server side
because it validates in a thread (~0.5 ms a MeterValues), sends no CALLERROR for unparsable frames
and dies on deep nesting (see docs/ocpp.md).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import fastjsonschema
import ocpp

from plugins.ocpp import fastpath

if TYPE_CHECKING:
    from hub.clock import Clock

_LOGGER = logging.getLogger(__name__)

CALL, CALLRESULT, CALLERROR = 2, 3, 4
MAX_DEPTH = 32  # the deepest real OCPP payload (2.0.1 NotifyReport) nests about 8 levels


class Version(enum.StrEnum):
    V16 = "ocpp1.6"
    V201 = "ocpp2.0.1"


class Err(enum.Enum):
    """Error classes, spelled per version when sent (1.6 misspells two of them)."""

    FORMAT = ("FormationViolation", "FormatViolation")
    NOT_JSON = ("FormationViolation", "RpcFrameworkError")
    RPC_FRAMEWORK = ("ProtocolError", "RpcFrameworkError")
    MESSAGE_TYPE = ("ProtocolError", "MessageTypeNotSupported")
    PROTOCOL = ("ProtocolError", "ProtocolError")
    NOT_IMPLEMENTED = ("NotImplemented", "NotImplemented")
    NOT_SUPPORTED = ("NotSupported", "NotSupported")
    INTERNAL = ("InternalError", "InternalError")
    SECURITY = ("SecurityError", "SecurityError")
    OCCURRENCE = ("OccurenceConstraintViolation", "OccurrenceConstraintViolation")
    PROPERTY = ("PropertyConstraintViolation", "PropertyConstraintViolation")
    TYPE = ("TypeConstraintViolation", "TypeConstraintViolation")
    GENERIC = ("GenericError", "GenericError")

    def code(self, version: Version) -> str:
        return self.value[0 if version is Version.V16 else 1]


class OcppCallError(Exception):
    """Raised by a handler (or by the checks) to answer a CALL with a CALLERROR."""

    def __init__(
        self,
        kind: Err,
        description: str,
        details: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> None:
        super().__init__(description)
        self.kind, self.description, self.details = kind, description, dict(details or {})
        self.message_id = message_id


class CallErrorReceived(Exception):
    """The charger answered one of our CALLs with a CALLERROR."""

    def __init__(self, action: str, code: str, description: str, details: Any) -> None:
        super().__init__(f"{action} refused by charger: {code} {description}".strip())
        self.action, self.code, self.description, self.details = action, code, description, details


# --- schemas ----------------------------------------------------------------------------------
_SCHEMA_DIRS = {
    Version.V16: os.path.join(os.path.dirname(ocpp.__file__), "v16", "schemas"),
    Version.V201: os.path.join(os.path.dirname(ocpp.__file__), "v201", "schemas"),
}
_SCHEMA_FORMATS = {
    # The ocpp schemas mark timestamps "date-time"; chargers in the field send RFC 3339 with or
    # without fractions and with Z or an offset. Parsing (not the schema) is where that is judged.
    "date-time": r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d:?\d\d)?$",
    "uri": r"^\S+$",
}


def _schema_file(version: Version, action: str, response: bool) -> str:
    if version is Version.V16:
        name = f"{action}Response.json" if response else f"{action}.json"
    else:
        name = f"{action}{'Response' if response else 'Request'}.json"
    return os.path.join(_SCHEMA_DIRS[version], name)


@functools.cache
def actions(version: Version) -> frozenset[str]:
    """Every action the version defines (from the schema files the library ships)."""
    suffix = ".json" if version is Version.V16 else "Request.json"
    names = set()
    for file in os.listdir(_SCHEMA_DIRS[version]):
        if file.endswith("Response.json") or not file.endswith(suffix):
            continue
        names.add(file[: -len(suffix)])
    return frozenset(names)


@functools.cache
def validator(version: Version, action: str, response: bool) -> Callable[[Any], Any]:
    """A compiled validator (fastjsonschema: ~20x the speed of jsonschema), built on first use."""
    with open(_schema_file(version, action, response), encoding="utf-8") as fh:
        schema = json.load(fh)
    schema.pop("id", None)  # a relative urn "id" makes the draft-04 resolver look it up
    schema.pop("$id", None)
    return fastjsonschema.compile(schema, formats=_SCHEMA_FORMATS, use_default=False)


_RULE_KIND = {
    "type": Err.TYPE,
    "required": Err.OCCURRENCE,
    "minItems": Err.OCCURRENCE,
    "maxItems": Err.OCCURRENCE,
    "additionalProperties": Err.FORMAT,
}


@functools.cache
def _fast_paths() -> dict[tuple[Version, str, bool], Callable[[Any], bool]]:
    meter_values = _schema_file(Version.V16, "MeterValues", False)
    return {
        (Version.V16, "MeterValues", False): fastpath.meter_values_16(
            meter_values, _SCHEMA_FORMATS["date-time"]
        ),
    }


def validate(version: Version, action: str, payload: Any, *, response: bool = False) -> None:
    fast = _fast_paths().get((version, action, response))
    if fast is not None and fast(payload):
        return
    try:
        validator(version, action, response)(payload)
    except fastjsonschema.JsonSchemaValueException as err:
        kind = _RULE_KIND.get(err.rule or "", Err.PROPERTY)
        if not isinstance(payload, dict):
            kind = Err.FORMAT
        path = (err.name or "data").replace("data", "payload", 1)
        raise OcppCallError(kind, f"{path}: {err.message}"[:480]) from None


# --- frames -----------------------------------------------------------------------------------
def _depth_ok(value: Any, limit: int = MAX_DEPTH) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return True


def parse_frame(text: str, max_size: int) -> list[Any]:
    """Parse and shape-check one frame; raises OcppCallError with the message id when known."""
    if len(text) > max_size:
        raise OcppCallError(Err.FORMAT, f"frame of {len(text)} characters exceeds {max_size}")
    try:
        msg = json.loads(text)
    except ValueError:
        raise OcppCallError(Err.NOT_JSON, "frame is not valid JSON") from None
    except RecursionError:
        raise OcppCallError(Err.RPC_FRAMEWORK, f"frame nests deeper than {MAX_DEPTH}") from None
    # Counting brackets is C-speed; only a frame that could be deep gets the exact walk.
    if text.count("[") + text.count("{") > MAX_DEPTH and not _depth_ok(msg):
        known = msg[1] if isinstance(msg, list) and len(msg) > 1 else None
        raise OcppCallError(
            Err.FORMAT,
            f"payload nests deeper than {MAX_DEPTH} levels",
            message_id=known if isinstance(known, str) and 0 < len(known) <= 36 else None,
        )
    if not isinstance(msg, list) or len(msg) < 3:
        raise OcppCallError(Err.RPC_FRAMEWORK, "frame is not an OCPP-J array")
    if not isinstance(msg[1], str) or not 0 < len(msg[1]) <= 36:
        raise OcppCallError(Err.RPC_FRAMEWORK, "message id must be a string of 1-36 characters")
    kind, message_id = msg[0], msg[1]
    shapes = {CALL: 4, CALLRESULT: 3, CALLERROR: 5}
    if kind not in shapes or isinstance(kind, bool):
        raise OcppCallError(
            Err.MESSAGE_TYPE, f"message type {kind!r} is not supported", message_id=message_id
        )
    if len(msg) != shapes[kind]:
        # Without the right arity the id may not be what it seems: answer as unreadable.
        raise OcppCallError(Err.RPC_FRAMEWORK, f"message type {kind} needs {shapes[kind]} elements")
    if kind == CALL and not isinstance(msg[2], str):
        raise OcppCallError(Err.PROTOCOL, "action must be a string", message_id=message_id)
    return msg


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


class RpcEndpoint:
    """One charger connection's OCPP-J state: our pending CALL and the charger's handlers.

    CALLs from the charger are handled one at a time, in order, in the read loop. A handler must
    therefore never await `call()` on its own connection (it would wait for an answer the read
    loop cannot read); it schedules such follow-ups as tasks, and `call()` refuses the mistake.
    """

    def __init__(
        self,
        version: Version,
        send: Callable[[str], Awaitable[None]],
        handlers: Mapping[str, Handler],
        clock: Clock,
        *,
        name: str,
        max_frame: int = 262_144,
        call_timeout: float = 30.0,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.version = version
        self.name = name
        self._send = send
        self._handlers = handlers
        self._clock = clock
        self._max_frame = max_frame
        self.call_timeout = call_timeout
        self._on_error = on_error
        self._pending: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self._call_lock = asyncio.Lock()
        self._closed = False
        self._logged: set[str] = set()
        self._handler_task: asyncio.Task[Any] | None = None
        self.errors = 0

    # --- inbound ------------------------------------------------------------------------
    async def receive(self, text: str) -> None:
        """Handle one text frame from the charger. Never raises for anything the charger sent."""
        message_id = "-1"
        try:
            msg = parse_frame(text, self._max_frame)
            message_id = msg[1]
            if msg[0] == CALL:
                await self._handle_call(message_id, msg[2], msg[3])
            elif msg[0] == CALLRESULT:
                self._resolve(message_id, msg[2], None)
            else:
                self._resolve(message_id, None, msg[2:])
        except OcppCallError as err:
            self._complain(err, text)
            await self._send_error(err.message_id or message_id, err)

    async def _handle_call(self, message_id: str, action: str, payload: Any) -> None:
        handler = self._handlers.get(action)
        if handler is None:
            kind = Err.NOT_SUPPORTED if action in actions(self.version) else Err.NOT_IMPLEMENTED
            raise OcppCallError(kind, f"action {action!r} is not {kind.name.lower()}")
        validate(self.version, action, payload)
        self._handler_task = asyncio.current_task()
        try:
            result = handler(payload)
            if inspect.isawaitable(result):
                result = await result
        except OcppCallError:
            raise
        except Exception as err:
            _LOGGER.exception("%s: handler for %s failed", self.name, action)
            raise OcppCallError(Err.INTERNAL, f"{action} could not be processed") from err
        finally:
            self._handler_task = None
        try:
            validate(self.version, action, result, response=True)
        except OcppCallError as err:
            _LOGGER.error("%s: our %s answer breaks the schema: %s", self.name, action, err)
            raise OcppCallError(Err.INTERNAL, f"{action} could not be answered") from None
        await self._send(json.dumps([CALLRESULT, message_id, result], separators=(",", ":")))

    def _complain(self, err: OcppCallError, text: str) -> None:
        """Log the first error of each kind per connection at WARNING, the rest at DEBUG."""
        self.errors += 1
        level = logging.DEBUG if err.kind.name in self._logged else logging.WARNING
        self._logged.add(err.kind.name)
        _LOGGER.log(
            level, "%s: %s: %s (frame %r)", self.name, err.kind.code(self.version),
            err.description, text[:200],
        )  # fmt: skip
        if self._on_error is not None:
            self._on_error(err.kind.code(self.version), err.description)

    async def _send_error(self, message_id: str, err: OcppCallError) -> None:
        frame = [CALLERROR, message_id, err.kind.code(self.version), err.description, err.details]
        try:
            await self._send(json.dumps(frame, separators=(",", ":")))
        except ConnectionError:
            pass

    def _resolve(self, message_id: str, payload: Any, error: list[Any] | None) -> None:
        pending = self._pending.pop(message_id, None)
        if pending is None:
            _LOGGER.debug("%s: answer to unknown or expired call %s", self.name, message_id)
            return
        action, future = pending
        if future.done():
            return
        if error is not None:
            code, description, details = error
            future.set_exception(CallErrorReceived(action, str(code), str(description), details))
            return
        try:
            validate(self.version, action, payload, response=True)
        except OcppCallError as err:
            future.set_exception(
                CallErrorReceived(action, err.kind.code(self.version), err.description, payload)
            )
            return
        future.set_result(payload)

    # --- outbound -----------------------------------------------------------------------
    async def call(
        self, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a CALL and return the charger's answer payload.

        Raises CallErrorReceived (a CALLERROR or an invalid answer), TimeoutError (no answer
        within `timeout` seconds of hub time) or ConnectionError (the socket went away).
        """
        if self._handler_task is not None and asyncio.current_task() is self._handler_task:
            raise RuntimeError(f"{action}: a handler must not await a call on its own connection")
        validate(self.version, action, payload)
        async with self._call_lock:  # OCPP-J: one outstanding CALL per direction
            if self._closed:
                raise ConnectionError(f"{self.name} is not connected")
            message_id = uuid.uuid4().hex
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending[message_id] = (action, future)
            limit = self.call_timeout if timeout is None else timeout
            timer = self._clock.call_later(
                limit,
                lambda: (
                    future.done()
                    or future.set_exception(
                        TimeoutError(f"{self.name} did not answer {action} within {limit:g} s")
                    )
                ),
            )
            try:
                await self._send(json.dumps([CALL, message_id, action, payload]))
                return await future
            finally:
                timer.cancel()
                self._pending.pop(message_id, None)

    def close(self) -> None:
        """The socket is gone: every pending call fails at once instead of timing out."""
        self._closed = True
        for action, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.name} disconnected during {action}"))
        self._pending.clear()
