"""The live websocket /api/websocket (Home Assistant's message shapes): authenticate first, then
subscribe to events or entities, get states, call services. Each client has a bounded queue.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from hub.bus import EVENT_STATE_CHANGED, MATCH_ALL, Event
from hub.storage.schema import json_dumps
from web.api import call_service
from web.auth import Principal
from web.queries import SECURITY_EVENT_SUFFIX, redact
from web.routes import CLIENT_ADDRESS, SESSION_COOKIE

if TYPE_CHECKING:
    from hub.clock import Timer
    from web.server import WebServer

_LOGGER = logging.getLogger(__name__)

AUTH_TIMEOUT = 10.0  # hub-clock seconds a client has to authenticate
MAX_MESSAGE = 64 * 1024
MAX_SUBSCRIPTIONS = 64


class Connection:
    """One client: its principal, subscriptions and outgoing queue (written by one task)."""

    def __init__(self, server: WebServer, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.server = server
        self.ws = ws
        self.request = request
        self.principal: Principal | None = None
        self.subscriptions: dict[int, Callable[[], None]] = {}
        # Text to send; (code, reason) to close after what came before; None: stop.
        self.queue: asyncio.Queue[str | tuple[int, bytes] | None] = asyncio.Queue(
            server.conf["websocket_queue"]
        )
        self.closing = False
        self.timers: list[Timer] = []

    def send(self, message: Mapping[str, Any]) -> None:
        """Queue a message; a client that falls a whole queue behind is disconnected."""
        if self.closing:
            return
        try:
            self.queue.put_nowait(json_dumps(message))
        except asyncio.QueueFull:
            _LOGGER.warning("websocket client %s is too slow: disconnecting", self.name)
            self.close_soon(WSCloseCode.TRY_AGAIN_LATER, "too slow", drop=True)

    @property
    def name(self) -> str:
        who = self.principal.name if self.principal else "?"
        return f"{who}@{self.request.get(CLIENT_ADDRESS) or self.request.remote}"

    def close_soon(
        self, code: int = WSCloseCode.POLICY_VIOLATION, reason: str = "", *, drop: bool = False
    ) -> None:
        """Close after what is queued (a refusal's message must arrive), or at once, dropping
        the queue (a client too slow to read it)."""
        if self.closing:
            return
        self.closing = True
        self.unsubscribe_all()
        message = reason.encode()[:120]
        if not drop:
            try:
                self.queue.put_nowait((code, message))
                return
            except asyncio.QueueFull:
                pass
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)
        self.server.hub.create_task(self.ws.close(code=code, message=message), "websocket close")

    async def writer(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None or self.ws.closed:
                return
            try:
                if isinstance(item, tuple):
                    await self.ws.close(code=item[0], message=item[1])
                    return
                await self.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    def unsubscribe_all(self) -> None:
        for unsubscribe in self.subscriptions.values():
            unsubscribe()
        self.subscriptions.clear()
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    def result(self, msg_id: Any, result: Any = None) -> None:
        self.send({"id": msg_id, "type": "result", "success": True, "result": result})

    def error(self, msg_id: Any, code: str, message: str) -> None:
        error = {"code": code, "message": message}
        self.send({"id": msg_id, "type": "result", "success": False, "error": error})


class Sockets:
    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.connections: set[Connection] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=55, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        conn = Connection(self.server, ws, request)
        self.connections.add(conn)
        writer = asyncio.get_running_loop().create_task(conn.writer())
        clock = self.server.hub.clock
        conn.timers.append(clock.call_later(AUTH_TIMEOUT, lambda: self._auth_timeout(conn)))
        conn.send({"type": "auth_required", "version": self.server.version})
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                await self._on_message(conn, msg.data)
                if conn.closing:
                    break
        finally:
            self.connections.discard(conn)
            conn.unsubscribe_all()
            if not conn.closing:  # the client went: nothing more to send
                conn.closing = True
                while not conn.queue.empty():
                    conn.queue.get_nowait()
                conn.queue.put_nowait(None)
            await asyncio.wait([writer], timeout=5)
            await ws.close()
        return ws

    def _auth_timeout(self, conn: Connection) -> None:
        if conn.principal is None:
            conn.send({"type": "auth_invalid", "message": "authentication timed out"})
            conn.close_soon(WSCloseCode.POLICY_VIOLATION, "auth timeout")

    async def _on_message(self, conn: Connection, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            if conn.principal is None:
                await self._refuse(conn, "expected a JSON object")
            else:
                conn.error(None, "invalid_format", "expected a JSON object")
            return
        if conn.principal is None:
            await self._authenticate(conn, msg)
            return
        msg_id = msg.get("id")
        if not isinstance(msg_id, int):
            conn.error(msg_id, "invalid_format", "every command needs an integer id")
            return
        command = COMMANDS.get(str(msg.get("type")))
        if command is None:
            conn.error(msg_id, "unknown_command", f"unknown command {msg.get('type')!r}")
            return
        try:
            await command(self, conn, msg_id, msg)
        except Exception:
            _LOGGER.exception("websocket command %s failed", msg.get("type"))
            conn.error(msg_id, "unknown_error", "the command failed; the hub log says why")

    async def _refuse(self, conn: Connection, message: str) -> None:
        conn.send({"type": "auth_invalid", "message": message})
        conn.close_soon(WSCloseCode.POLICY_VIOLATION, "auth invalid")

    async def _authenticate(self, conn: Connection, msg: dict[str, Any]) -> None:
        auth = self.server.auth
        if msg.get("type") != "auth":
            await self._refuse(conn, "authenticate first")
            return
        principal = None
        token, csrf = msg.get("access_token"), msg.get("csrf_token")
        if isinstance(token, str):
            principal = await auth.token(token)
        elif isinstance(csrf, str):
            # A browser: its session cookie came with the upgrade; the CSRF token proves the
            # page that opened the socket is ours (a cross-site page cannot read it).
            cookie = conn.request.cookies.get(SESSION_COOKIE, "")
            found = await auth.session(cookie) if cookie else None
            if found is not None and found.csrf and hmac.compare_digest(found.csrf, csrf):
                principal = found
        if principal is None:
            await self._refuse(conn, "invalid credentials")
            return
        conn.principal = principal
        if principal.via == "session":
            deadline = auth.session_deadline(principal)
            if deadline is not None:
                when = max(deadline, self.server.hub.now())
                conn.timers.append(
                    self.server.hub.clock.call_at(when, lambda: conn.close_soon(reason="expired"))
                )
        conn.send({"type": "auth_ok", "user": {"name": principal.name, "role": principal.role}})

    def revoked(self, kind: str, key: str) -> None:
        """A session, token or user was revoked: its sockets close at once."""
        for conn in list(self.connections):
            p = conn.principal
            if p is None:
                continue
            if (kind == "user" and p.user_id == key) or (
                kind in ("session", "token") and p.key == key
            ):
                conn.close_soon(WSCloseCode.POLICY_VIOLATION, "credentials revoked")

    async def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close_soon(WSCloseCode.GOING_AWAY, "hub stopping")
        for _ in range(3):
            await asyncio.sleep(0)


# --- commands ---------------------------------------------------------------------------------
async def _ping(sockets: Sockets, conn: Connection, msg_id: int, msg: dict[str, Any]) -> None:
    conn.send({"id": msg_id, "type": "pong"})


async def _get_states(sockets: Sockets, conn: Connection, msg_id: int, msg: dict[str, Any]) -> None:
    conn.result(msg_id, [s.as_dict() for s in sockets.server.hub.states.all()])


def _may_see(principal: Principal, event_type: str) -> bool:
    return principal.may("admin") or not event_type.endswith(SECURITY_EVENT_SUFFIX)


async def _subscribe_events(
    sockets: Sockets, conn: Connection, msg_id: int, msg: dict[str, Any]
) -> None:
    event_type = msg.get("event_type") or MATCH_ALL
    if not isinstance(event_type, str):
        conn.error(msg_id, "invalid_format", "event_type must be a string")
        return
    assert conn.principal is not None
    if event_type != MATCH_ALL and not _may_see(conn.principal, event_type):
        conn.error(msg_id, "unauthorized", "security events need the admin role")
        return
    if len(conn.subscriptions) >= MAX_SUBSCRIPTIONS or msg_id in conn.subscriptions:
        conn.error(msg_id, "invalid_format", "too many subscriptions, or the id is in use")
        return
    principal = conn.principal

    def forward(event: Event) -> None:
        if _may_see(principal, event.event_type):
            data = event.as_dict()
            data["data"] = redact(data["data"])
            conn.send({"id": msg_id, "type": "event", "event": data})

    conn.subscriptions[msg_id] = sockets.server.hub.bus.listen(event_type, forward)
    conn.result(msg_id)


async def _subscribe_entities(
    sockets: Sockets, conn: Connection, msg_id: int, msg: dict[str, Any]
) -> None:
    """Entities matching `entity_ids` (patterns like `charger.*`) or `domains`: all now, then
    every change (a removed entity is sent as null)."""
    patterns, domains = msg.get("entity_ids"), msg.get("domains")
    if not all(isinstance(v, list | type(None)) for v in (patterns, domains)):
        conn.error(msg_id, "invalid_format", "entity_ids and domains must be lists")
        return
    if len(conn.subscriptions) >= MAX_SUBSCRIPTIONS or msg_id in conn.subscriptions:
        conn.error(msg_id, "invalid_format", "too many subscriptions, or the id is in use")
        return
    wanted_domains = {str(d) for d in domains or ()}
    wanted = [str(p) for p in patterns or ()]

    def matches(entity_id: str) -> bool:
        if not wanted and not wanted_domains:
            return True
        if entity_id.partition(".")[0] in wanted_domains:
            return True
        return any(fnmatch.fnmatchcase(entity_id, p) for p in wanted)

    def forward(event: Event) -> None:
        new = event.data.get("new_state")
        changed = {event.data["entity_id"]: new.as_dict() if new else None}
        conn.send({"id": msg_id, "type": "entities", "changed": changed})

    hub = sockets.server.hub
    conn.subscriptions[msg_id] = hub.bus.listen(
        EVENT_STATE_CHANGED, forward, lambda data: matches(data["entity_id"])
    )
    conn.result(msg_id)
    states = {s.entity_id: s.as_dict() for s in hub.states.all() if matches(s.entity_id)}
    conn.send({"id": msg_id, "type": "entities", "added": states})


async def _unsubscribe(
    sockets: Sockets, conn: Connection, msg_id: int, msg: dict[str, Any]
) -> None:
    unsubscribe = conn.subscriptions.pop(msg.get("subscription"), None)  # type: ignore[arg-type]
    if unsubscribe is None:
        conn.error(msg_id, "not_found", "no such subscription")
        return
    unsubscribe()
    conn.result(msg_id)


async def _call_service(
    sockets: Sockets, conn: Connection, msg_id: int, msg: dict[str, Any]
) -> None:
    domain, service = msg.get("domain"), msg.get("service")
    if not isinstance(domain, str) or not isinstance(service, str):
        conn.error(msg_id, "invalid_format", "domain and service are required strings")
        return
    assert conn.principal is not None
    status, body = await call_service(
        sockets.server, conn.principal, domain, service, msg.get("service_data") or {}
    )
    if status == 200:
        conn.result(msg_id, body)
        return
    codes = {400: "invalid_format", 403: "unauthorized", 404: "not_found", 409: "unavailable"}
    conn.error(msg_id, codes.get(status, "unknown_error"), body.get("message", ""))


COMMANDS: dict[str, Callable[[Sockets, Connection, int, dict[str, Any]], Any]] = {
    "ping": _ping,
    "get_states": _get_states,
    "subscribe_events": _subscribe_events,
    "subscribe_entities": _subscribe_entities,
    "unsubscribe_events": _unsubscribe,
    "unsubscribe": _unsubscribe,
    "call_service": _call_service,
}
