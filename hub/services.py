"""The service registry: named actions (`charging.pause`) that users, automations and plugins call.

A call is validated against the service's voluptuous schema, announced on the bus, then run.
The announcement (`call_service`, which the recorder keeps) never carries a secret: the fields a
service declares secret, and any key named like a credential, are masked there.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.bus import EVENT_CALL_SERVICE, EVENT_SERVICE_REGISTERED, Context

if TYPE_CHECKING:
    from hub.bus import EventBus

_LOGGER = logging.getLogger(__name__)

# A key holding any of these names a credential wherever it appears (`password`, `api_key`,
# `webhook_secret`, ...): masked in recorded `call_service` events and in what the web shows.
SECRET_KEYS = ("password", "secret", "token", "key", "cookie", "authorization")
# RFID cards: they identify a driver, they open nothing, and history must say which card charged.
NOT_SECRET_KEYS = frozenset({"id_token", "id_tag"})
MASK = "***"


def is_secret_key(key: Any) -> bool:
    name = str(key).lower()
    return name not in NOT_SECRET_KEYS and any(s in name for s in SECRET_KEYS)


def redact(value: Any, secret_fields: Iterable[str] = ()) -> Any:
    """`value` with credentials masked: the top-level `secret_fields`, and at any depth a key whose
    name says it is a credential. Empty values stay as they are, so "none given" still shows.
    """
    declared = frozenset(secret_fields)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            secret = k in declared or is_secret_key(k)
            out[k] = MASK if secret and v not in (None, "") else redact(v)
        return out
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _secret_fields(svc: Service, data: Mapping[str, Any]) -> Iterable[str]:
    fields = svc.secret_fields
    if not callable(fields):
        return fields
    try:
        return list(fields(data))
    except Exception:  # a broken rule must not leak: mask every field of the call
        _LOGGER.exception("secret_fields rule failed; the call is recorded with all data masked")
        return list(data)


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
    # Field names, or a rule that names them from the call's data (a configuration service
    # whose `value` is a secret only when its `key` names one).
    secret_fields: frozenset[str] | Callable[[Mapping[str, Any]], Iterable[str]] = frozenset()


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
        *,
        secret_fields: Iterable[str] | Callable[[Mapping[str, Any]], Iterable[str]] = (),
    ) -> None:
        """Add (or replace) `domain.service`.

        `secret_fields` names the top-level fields of the data that are credentials: the handler
        gets them as sent, the `call_service` event shows them as `***`. A callable gets the
        validated data and returns those names for that call.
        """
        domain, service = domain.lower(), service.lower()
        if schema is not None and not isinstance(schema, vol.Schema):
            schema = vol.Schema(schema)
        secrets: frozenset[str] | Callable[[Mapping[str, Any]], Iterable[str]]
        if callable(secret_fields):
            secrets = secret_fields
        elif isinstance(secret_fields, str):  # else read as its letters, masking nothing it should
            secrets = frozenset([secret_fields])
        else:
            secrets = frozenset(secret_fields)
        self._services.setdefault(domain, {})[service] = Service(
            handler, schema, description, secrets
        )
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
        """Validate, fire `call_service`, run the handler and return what it returned.

        The event carries the data with its secrets masked (the recorder stores every event);
        the handler gets the real values.
        """
        domain, service = domain.lower(), service.lower()
        svc = self._get(domain, service)
        validated = self.validate(domain, service, data)
        context = context or Context()
        self._bus.fire(
            EVENT_CALL_SERVICE,
            {
                "domain": domain,
                "service": service,
                "service_data": redact(validated, _secret_fields(svc, validated)),
            },
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
