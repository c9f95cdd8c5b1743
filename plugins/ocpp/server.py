"""The OCPP-J websocket listener: subprotocol negotiation, security profiles 1-3, pending
registration, and one live connection per charger id.

A new connection is authenticated before it touches an existing one; an authenticated one
replaces the old socket, and the old socket's cleanup can never remove the new one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from plugins.ocpp.chargers import ChargerAccount, ChargerRegistry
from plugins.ocpp.files import FileService
from plugins.ocpp.local_list import LocalLists
from plugins.ocpp.rpc import Err, Handler, OcppCallError, RpcEndpoint, Version
from plugins.ocpp.station import Station
from plugins.ocpp.v16 import V16
from plugins.ocpp.v201 import V201

if TYPE_CHECKING:
    from hub.bus import Event
    from hub.core import Hub
    from plugins.ocpp.transactions import Transactions

_LOGGER = logging.getLogger(__name__)

_CHARGER_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,48}$")  # 2.0.1 identity: at most 48 characters
EVENT_CONNECTED = "ocpp_connected"
FREEZE_EVERY = 500  # connections between gc.freeze() calls
EVENT_DISCONNECTED = "ocpp_disconnected"
# Fired by billing with a running session's live price; forwarded to 2.0.1 stations.
EVENT_COST_UPDATED = "billing_cost_updated"


@dataclass(slots=True)
class Connection:
    charger_id: str
    ws: web.WebSocketResponse
    endpoint: RpcEndpoint
    address: str


class OcppServer:
    def __init__(
        self,
        hub: Hub,
        conf: dict[str, Any],
        registry: ChargerRegistry,
        transactions: Transactions,
    ) -> None:
        self.hub = hub
        self.conf = conf
        self.registry = registry
        self.transactions = transactions
        self.heartbeat_interval: int = conf["heartbeat_interval"]
        self.pending_interval: int = conf["pending_interval"]
        self.stations: dict[str, Station] = {}
        self.connections: dict[str, Connection] = {}
        self._runner: web.AppRunner | None = None
        self._unlisten: list[Callable[[], None]] = []
        self._connected_since_freeze = 0
        self.ports: list[int] = []
        self.files = FileService(hub)
        self.local_lists = LocalLists(self, conf["local_list_service"])
        self._protocols: dict[str, tuple[Version, Any]] = {
            "ocpp1.6": (Version.V16, V16),
            "ocpp2.0.1": (Version.V201, V201),
        }

    # --- lifecycle ------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        prefix = "/" + self.conf["path_prefix"].strip("/")
        if prefix != "/":
            app.router.add_get(prefix + "/{charger_id}", self._handle)
        self.files.routes(app)
        app.router.add_get("/{charger_id}", self._handle)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        backlog = self.conf["backlog"]
        host = self.conf["host"]
        plain = web.TCPSite(
            self._runner, host, self.conf["port"], backlog=backlog, reuse_address=True
        )
        await plain.start()
        self.ports = [_bound_port(plain)]
        tls = self.conf.get("tls")
        if tls:
            site = web.TCPSite(
                self._runner, host, tls["port"], ssl_context=_ssl_context(tls),
                backlog=backlog, reuse_address=True,
            )  # fmt: skip
            await site.start()
            self.ports.append(_bound_port(site))
        _LOGGER.info("OCPP listening on %s ports %s", host, self.ports)
        self._unlisten.append(self.hub.bus.listen(EVENT_COST_UPDATED, self._cost_updated))

    async def stop(self) -> None:
        while self._unlisten:
            self._unlisten.pop()()
        self.local_lists.close()
        for conn in list(self.connections.values()):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"hub shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
        self.registry.flush()

    # --- billing -> station --------------------------------------------------------------
    def _cost_updated(self, event: Event) -> None:
        """OCPP 2.0.1 CostUpdated for a known transaction of a connected 2.0.1 station; sent
        in a task of its own so the bus never waits for the station."""
        charger_id, transaction_id = event.data.get("charger_id"), event.data.get("transaction_id")
        station = self.stations.get(charger_id) if isinstance(charger_id, str) else None
        if (
            station is None
            or not station.connected
            or station.version != V201.version
            or not isinstance(transaction_id, str)
            or not self.transactions.known(station.id, transaction_id)
        ):
            return
        try:
            total = float(event.data["total"])
        except (KeyError, TypeError, ValueError):
            _LOGGER.warning("%s: CostUpdated not sent: bad total %r", station.id,
                            event.data.get("total"))  # fmt: skip
            return
        payload = {"totalCost": total, "transactionId": transaction_id}
        self.hub.create_task(self._send_cost(station, payload), f"ocpp {station.id} CostUpdated")

    async def _send_cost(self, station: Station, payload: dict[str, Any]) -> None:
        try:
            await station.call("CostUpdated", payload)
        except Exception as err:  # a price display must never break anything
            _LOGGER.warning("%s: CostUpdated for %s failed: %r", station.id,
                            payload["transactionId"], err)  # fmt: skip

    # --- one websocket --------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        charger_id = request.match_info["charger_id"]
        address = request.remote or "?"
        if not _CHARGER_ID.match(charger_id):
            raise web.HTTPBadRequest(text="invalid charge point id")
        if self.registry.throttled(charger_id, address):
            self.registry.security_event(charger_id, "AuthenticationThrottled", address=address)
            raise web.HTTPTooManyRequests(text="too many failed attempts, try later")
        account = self.registry.get(charger_id)
        if account is None:
            if not self.registry.allow_pending:
                self.registry.failed(charger_id, address, "unknown charge point id")
                raise web.HTTPNotFound(text="unknown charge point")
            account = self.registry.add_pending(charger_id, address)
        elif account.status == "rejected":
            self.registry.failed(charger_id, address, "charger was rejected by an operator")
            raise web.HTTPForbidden(text="charge point rejected")
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        chosen = next((p for p in offered if p in self._protocols and p in account.versions), None)
        if chosen is None:
            raise web.HTTPBadRequest(text=f"no supported OCPP subprotocol in {offered[:5]}")
        await self._authenticate(request, account, address)
        self.registry.succeeded(charger_id)

        ws = web.WebSocketResponse(
            protocols=(chosen,),
            max_msg_size=self.conf["max_message_bytes"],
            heartbeat=self.conf["ping_interval"] or None,
            compress=False,
        )
        await ws.prepare(request)
        station = self.stations.get(charger_id)
        if station is None:
            station = self.stations[charger_id] = Station(charger_id, self.hub)
        station.extra["host"] = request.host
        station.extra["secure"] = request.secure
        await self._serve(charger_id, chosen, ws, address)
        return ws

    async def _authenticate(
        self, request: web.Request, account: ChargerAccount, address: str
    ) -> None:
        profile = account.security_profile
        if account.status == "pending" or profile == 0:
            return
        if profile >= 2 and not request.secure:
            self.registry.failed(account.id, address, f"profile {profile} needs TLS")
            raise web.HTTPForbidden(text=f"security profile {profile} requires wss://")
        if profile == 3:
            if not _certificate_matches(request, account):
                self.registry.failed(account.id, address, "client certificate does not match")
                raise web.HTTPUnauthorized(text="client certificate required")
            return
        user, password = _basic_auth(request)
        if user != account.id or password is None:
            self.registry.failed(account.id, address, "missing or wrong Basic credentials")
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="evhub"'})
        if not await self.registry.check_password(account, password):
            self.registry.failed(account.id, address, "wrong password")
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="evhub"'})

    async def _serve(
        self, charger_id: str, protocol: str, ws: web.WebSocketResponse, address: str
    ) -> None:
        version, factory = self._protocols[protocol]
        station = self.stations[charger_id]
        adapter = factory(self, station)
        endpoint = RpcEndpoint(
            version, ws.send_str, self._registered_only(charger_id, adapter.handlers),
            self.hub.clock,
            name=charger_id, max_frame=self.conf["max_frame_bytes"],
            call_timeout=self.conf["call_timeout"],
        )  # fmt: skip
        conn = Connection(charger_id, ws, endpoint, address)
        old = self.connections.get(charger_id)
        self.connections[charger_id] = conn
        station.version, station.endpoint, station.commands = protocol, endpoint, adapter
        station.address, station.last_seen = address, self.hub.now()
        # Files (firmware, log uploads) are offered at the address the charger itself used.
        scheme = "https" if station.extra.get("secure") else "http"
        station.extra["base_url"] = f"{scheme}://{station.extra.get('host', '')}"
        if old is not None:
            _LOGGER.info("%s: new connection from %s replaces %s", charger_id, address, old.address)
            old.endpoint.close()
            self.hub.create_task(
                old.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"replaced"),
                f"ocpp close replaced {charger_id}",
            )
        self.hub.bus.fire(
            EVENT_CONNECTED, {"charger_id": charger_id, "protocol": protocol, "address": address}
        )
        _LOGGER.info("%s connected from %s (%s)", charger_id, address, protocol)
        self._connected_since_freeze += 1
        if self._connected_since_freeze >= FREEZE_EVERY:
            # Connection objects live as long as the charger stays: keep them out of full
            # collections, which otherwise stall the loop for 100+ ms with thousands of chargers.
            self._connected_since_freeze = 0
            gc.freeze()
        station.publish()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    station.last_seen = self.hub.now()
                    await endpoint.receive(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    # OCPP-J is text only; answer like any unreadable frame.
                    await endpoint.receive("\x00binary frame")
                elif msg.type == WSMsgType.ERROR:
                    _LOGGER.info("%s: websocket error %s", charger_id, ws.exception())
                    break
        except asyncio.CancelledError:
            raise
        except ConnectionError as err:  # the socket closed while we answered: a disconnect
            _LOGGER.info("%s: connection lost while answering (%s)", charger_id, err)
        except Exception:
            _LOGGER.exception("%s: connection handler failed", charger_id)
        finally:
            endpoint.close()
            # Only the connection that is still current may mark the station offline.
            if self.connections.get(charger_id) is conn:
                del self.connections[charger_id]
                station.endpoint = station.commands = None
                station.went_offline()
                self.hub.bus.fire(EVENT_DISCONNECTED, {"charger_id": charger_id})
                _LOGGER.info("%s disconnected", charger_id)

    def _registered_only(self, charger_id: str, handlers: dict[str, Handler]) -> dict[str, Handler]:
        """Until its registration is accepted a charger may only boot: anything else is answered
        SecurityError (2.0.1 B02.FR.09, B03.FR.07). A pending charger connects without credentials,
        so it must neither learn which id tags are valid nor record transactions."""

        def guard(action: str, handler: Handler) -> Handler:
            def guarded(payload: dict[str, Any]) -> Any:
                account = self.registry.get(charger_id)
                if account is None or account.status != "accepted":
                    status = account.status if account else "unknown"
                    raise OcppCallError(Err.SECURITY, f"{action} refused: registration {status}")
                return handler(payload)

            return guarded

        return {a: h if a == "BootNotification" else guard(a, h) for a, h in handlers.items()}

    def boot_status(self, station: Station) -> str:
        account = self.registry.get(station.id)
        if account is None or account.status == "pending":
            return "Pending"
        return "Accepted" if account.status == "accepted" else "Rejected"


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the asyncio server here; needed for port 0 in tests
    assert server is not None
    return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


def _basic_auth(request: web.Request) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


def _ssl_context(tls: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls["certfile"], tls["keyfile"])
    if tls.get("ca_certs"):
        # Profile 3 chargers present a certificate; profile 2 ones do not, so it is optional
        # here and required per charger in _certificate_matches.
        ctx.load_verify_locations(tls["ca_certs"])
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def _certificate_matches(request: web.Request, account: ChargerAccount) -> bool:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    cert = ssl_object.getpeercert() if ssl_object else None
    if not cert:
        return False
    names = {v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"}
    return account.id in names or (account.serial is not None and account.serial in names)
