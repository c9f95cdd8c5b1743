"""The service registry: named actions (`charging.pause`) that users, automations and plugins call.

A call is validated against the service's voluptuous schema, announced on the bus, then run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.bus import EVENT_CALL_SERVICE, EVENT_SERVICE_REGISTERED, Context

if TYPE_CHECKING:
    from hub.bus import EventBus

_LOGGER = logging.getLogger(__name__)


class ServiceNotFound(LookupError):
    def __init__(self, domain: str, service: str) -> None:
        super().__init__(f"service {domain}.{service} is not registered")
        self.domain, self.service = domain, service


class ServiceValidationError(ValueError):
    """A call's data did not match the schema; the message names the field."""

    def __init__(self, domain: str, service: str, error: vol.Invalid) -> None:
        errors = error.errors if isinstance(error, vol.MultipleInvalid) else [error]
        parts = []
        for err in errors:
            field = ".".join(str(p) for p in err.path) or "(data)"
            parts.append(f"{field}: {err.msg}")
        super().__init__(f"invalid data for {domain}.{service}: " + "; ".join(parts))
        self.fields = [".".join(str(p) for p in e.path) for e in errors]


@dataclass(frozen=True, slots=True)
class ServiceCall:
    domain: str
    service: str
    data: Mapping[str, Any]
    context: Context


Handler = Callable[[ServiceCall], Awaitable[Any] | Any]


@dataclass(frozen=True, slots=True)
class Service:
    handler: Handler
    schema: vol.Schema | None
    description: str = ""


class ServiceRegistry:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._services: dict[str, dict[str, Service]] = {}

    def register(
        self,
        domain: str,
        service: str,
        handler: Handler,
        schema: vol.Schema | Mapping[Any, Any] | None = None,
        description: str = "",
    ) -> None:
        domain, service = domain.lower(), service.lower()
        if schema is not None and not isinstance(schema, vol.Schema):
            schema = vol.Schema(schema)
        self._services.setdefault(domain, {})[service] = Service(handler, schema, description)
        self._bus.fire(EVENT_SERVICE_REGISTERED, {"domain": domain, "service": service})

    def remove(self, domain: str, service: str) -> None:
        services = self._services.get(domain, {})
        services.pop(service, None)
        if not services:
            self._services.pop(domain, None)

    def has(self, domain: str, service: str) -> bool:
        return service in self._services.get(domain, {})

    def catalog(self) -> dict[str, dict[str, str]]:
        """domain -> service -> description, for the API and the docs."""
        return {
            d: {n: s.description for n, s in svcs.items()} for d, svcs in self._services.items()
        }

    def validate(self, domain: str, service: str, data: Mapping[str, Any] | None) -> dict:
        svc = self._get(domain, service)
        payload = dict(data or {})
        if svc.schema is None:
            return payload
        try:
            return dict(svc.schema(payload))
        except vol.Invalid as err:
            raise ServiceValidationError(domain, service, err) from None

    async def call(
        self,
        domain: str,
        service: str,
        data: Mapping[str, Any] | None = None,
        context: Context | None = None,
    ) -> Any:
        """Validate, fire `call_service`, run the handler and return what it returned."""
        domain, service = domain.lower(), service.lower()
        svc = self._get(domain, service)
        validated = self.validate(domain, service, data)
        context = context or Context()
        self._bus.fire(
            EVENT_CALL_SERVICE,
            {"domain": domain, "service": service, "service_data": validated},
            context,
        )
        result = svc.handler(ServiceCall(domain, service, validated, context))
        if inspect.isawaitable(result):
            result = await result
        return result

    def _get(self, domain: str, service: str) -> Service:
        try:
            return self._services[domain.lower()][service.lower()]
        except KeyError:
            raise ServiceNotFound(domain, service) from None
