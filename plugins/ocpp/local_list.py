"""Keeps each charger's local authorization list in step with the hub's authorizer.

The list comes from a service: `local_list_service` when it is registered, else the first of
FALLBACKS that is, so whichever plugin authorizes also feeds the lists (`<domain>_changed` says
when); differential updates when versions allow.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from plugins.ocpp.rpc import CallErrorReceived

if TYPE_CHECKING:
    from hub.bus import Event
    from plugins.ocpp.server import OcppServer
    from plugins.ocpp.station import Station

_LOGGER = logging.getLogger(__name__)

SYNC_DELAY = 5.0  # seconds: a burst of token changes becomes one SendLocalList per charger
# Authorizer plugins that serve local lists, in order of preference when the configured one is
# absent. Each fires `<domain>_changed` {version} when its list changes.
FALLBACKS = ("accounts.local_list", "allowlist.local_list")


def _iso(value: Any) -> Any:
    # Lists carry expiries as ISO text or as aware datetimes (the allow-list's); OCPP wants text.
    if isinstance(value, datetime):
        value = value.astimezone(UTC).isoformat()
    return value.replace("+00:00", "Z") if isinstance(value, str) else value


class LocalLists:
    def __init__(self, server: OcppServer, service: str) -> None:
        self.server = server
        self.hub = server.hub
        self.services = tuple(dict.fromkeys((service, *FALLBACKS)))
        self._timer: Any = None
        domains = dict.fromkeys(name.partition(".")[0] for name in self.services)
        self._unsubscribe = [
            self.hub.bus.listen(f"{domain}_changed", self._changed) for domain in domains
        ]

    def close(self) -> None:
        for remove in self._unsubscribe:
            remove()
        if self._timer is not None:
            self._timer.cancel()

    def source(self) -> tuple[str, str] | None:
        """(domain, service) of the list in use: the configured one, else the first fallback."""
        for name in self.services:
            domain, _, service = name.partition(".")
            if self.hub.services.has(domain, service):
                return domain, service
        return None

    def _changed(self, event: Event) -> None:
        source = self.source()
        if source is None or event.event_type != f"{source[0]}_changed":
            return  # another authorizer's list changed: not the one chargers get
        if self._timer is None:
            self._timer = self.hub.clock.call_later(SYNC_DELAY, self._sync_all)

    def _sync_all(self) -> None:
        self._timer = None
        for station in self.server.stations.values():
            if station.connected and station.accepted:
                self.hub.create_task(self.sync(station), f"local list {station.id}")

    async def after_boot(self, station: Station) -> None:
        """Learn the charger's list version, then bring it up to date."""
        try:
            answer = await station.call("GetLocalListVersion", {})
        except (CallErrorReceived, TimeoutError, ConnectionError) as err:
            _LOGGER.info("%s: no local list support (%s)", station.id, err)
            return
        station.local_list_version = answer.get("listVersion", answer.get("versionNumber"))
        await self.sync(station)

    async def sync(self, station: Station, *, full: bool = False) -> dict[str, Any]:
        source = self.source()
        if source is None:
            return {"status": "NotSupported", "detail": f"no {' or '.join(self.services)} service"}
        domain, name = source
        known = station.local_list_version
        since = None if full or known is None or known <= 0 else known
        charger = next((e.entity_id for e in station.connectors.values()), None)
        data = await self.hub.services.call(
            domain, name, {"charger": charger, "since_version": since}
        )
        if since is not None and data["version"] == known:
            return {"status": "UpToDate", "version": known}
        try:
            answer = await self._send(station, data)
            if answer.get("status") == "VersionMismatch" and data["update_type"] != "Full":
                data = await self.hub.services.call(domain, name, {"charger": charger})
                answer = await self._send(station, data)
        except (CallErrorReceived, TimeoutError, ConnectionError) as err:
            _LOGGER.warning("%s: local list sync failed: %s", station.id, err)
            return {"status": "Failed", "detail": str(err)}
        if answer.get("status") == "Accepted":
            station.local_list_version = data["version"]
        return {**answer, "version": data["version"], "update_type": data["update_type"]}

    async def _send(self, station: Station, data: dict[str, Any]) -> dict[str, Any]:
        entries = data["entries"]
        if station.version == "ocpp1.6":
            items = []
            for e in entries:
                item: dict[str, Any] = {"idTag": e["id"][:20]}
                if e.get("status"):
                    info: dict[str, Any] = {"status": _v16_status(e["status"])}
                    if e.get("expiry"):
                        info["expiryDate"] = _iso(e["expiry"])
                    if e.get("group_id"):
                        info["parentIdTag"] = e["group_id"][:20]
                    item["idTagInfo"] = info
                items.append(item)
            payload = {"listVersion": data["version"], "updateType": data["update_type"],
                       "localAuthorizationList": items}  # fmt: skip
        else:
            items = []
            for e in entries:
                item = {"idToken": {"idToken": e["id"][:36], "type": e.get("type", "ISO14443")}}
                if e.get("status"):
                    info = {"status": e["status"]}
                    if e.get("expiry"):
                        info["cacheExpiryDateTime"] = _iso(e["expiry"])
                    if e.get("group_id"):
                        info["groupIdToken"] = {"idToken": e["group_id"][:36], "type": "Central"}
                    item["idTokenInfo"] = info
                items.append(item)
            payload = {"versionNumber": data["version"], "updateType": data["update_type"],
                       "localAuthorizationList": items}  # fmt: skip
        return await station.call("SendLocalList", payload)


def _v16_status(status: str) -> str:
    return status if status in ("Accepted", "Blocked", "Expired", "Invalid") else "Invalid"
