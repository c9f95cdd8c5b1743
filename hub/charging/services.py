"""Protocol-neutral `charger.*` services: start, stop, unlock, reset, availability and a limit.

They act on any ChargerEntity (OCPP, Modbus, serial) by entity id, so the UI, the API and
automations never need to know a charger's protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.charging.auth import IdToken, authorize
from hub.charging.charger import ChargerEntity, ChargingSchedule, CommandResult, RateUnit
from hub.services import ServiceCall

if TYPE_CHECKING:
    from hub.core import Hub

DOMAIN = "charger"
_TARGET = {vol.Required("entity_id"): vol.Match(r"^charger\.[a-z0-9_]+$")}


def _charger(hub: Hub, entity_id: str) -> ChargerEntity:
    entity = hub.entities.live(entity_id)
    if not isinstance(entity, ChargerEntity):
        raise LookupError(f"{entity_id} is not a charger")
    return entity


def register_charger_services(hub: Hub) -> None:
    def op(run: Callable[[ChargerEntity, ServiceCall], Awaitable[CommandResult]]) -> Any:
        async def handler(call: ServiceCall) -> dict[str, Any]:
            result = await run(_charger(hub, call.data["entity_id"]), call)
            return {"accepted": result.accepted, "detail": result.detail}

        return handler

    async def start(charger: ChargerEntity, call: ServiceCall) -> CommandResult:
        # A remote start for a token is a start by that token: the authorizers decide, exactly
        # as if the card were held to the reader, so a blocked card cannot charge this way.
        # (Charger plugins accept the token of the hub's own remote start without asking.)
        id_tag = call.data.get("id_tag")
        if id_tag:
            result = await authorize(hub, IdToken(id_tag), charger.entity_id, call.context)
            if not result.accepted:
                return CommandResult(False, f"token {result.status}: {result.reason or '-'}")
        return await charger.start(id_tag)

    services: dict[str, tuple[Any, dict[Any, Any], str]] = {
        "start": (
            op(start),
            {**_TARGET, vol.Optional("id_tag"): vol.All(str, vol.Length(min=1, max=36))},
            "Start charging (a remote start), optionally for an id tag.",
        ),
        "stop": (op(lambda c, call: c.stop()), _TARGET, "Stop the charging session."),
        "unlock": (op(lambda c, call: c.unlock()), _TARGET, "Unlock the connector."),
        "reset": (
            op(lambda c, call: c.reset(call.data["hard"])),
            {**_TARGET, vol.Optional("hard", default=False): bool},
            "Restart the charger (soft unless hard is true).",
        ),
        "set_available": (
            op(lambda c, call: c.set_available(call.data["available"])),
            {**_TARGET, vol.Required("available"): bool},
            "Make the connector available or unavailable for charging.",
        ),
        "set_limit": (
            op(
                lambda c, call: c.set_limit(
                    ChargingSchedule.constant(
                        call.data["limit"], call.data["unit"], call.data.get("phases")
                    )
                )
            ),
            {
                **_TARGET,
                vol.Required("limit"): vol.All(vol.Coerce(float), vol.Range(min=0)),
                vol.Optional("unit", default="A"): vol.In([u.value for u in RateUnit]),
                vol.Optional("phases"): vol.In([1, 3]),
            },
            "Set a constant charging limit in A (per phase) or W.",
        ),
    }
    for name, (handler, schema, description) in services.items():
        hub.services.register(DOMAIN, name, handler, schema, description)
