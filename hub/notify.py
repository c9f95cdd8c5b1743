"""Notifications: `notify.<name>` services (and `notify.notify`, the default) over the providers
plugins register with `hub_notify_providers`; message and title are templates rendered at send.

A provider is `provider(hub, config) -> notifier`, optionally with a `schema` for its own keys;
a notifier has `async send(notification)` and may have `async close()`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import voluptuous as vol

from hub.automation.templates import Template, TemplateError, template_value
from hub.bus import Context
from hub.services import ServiceCall

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

DOMAIN = "notify"
DEFAULT_SERVICE = "notify"
BASE_KEYS = (
    "name",
    "platform",
    "default",
)  # every notifier's config has these; the rest is its own
EVENT_NOTIFY_FAILED = "notify_failed"


class NotifyError(Exception):
    """A notification could not be delivered; the message says which notifier and why."""


@dataclass(frozen=True, slots=True)
class Notification:
    message: str
    title: str | None = None
    target: tuple[str, ...] = ()  # provider-specific addresses; empty: the notifier's defaults
    data: Mapping[str, Any] = field(default_factory=dict)  # provider-specific extras (html, ...)
    context: Context = field(default_factory=Context)


class Notifier(Protocol):
    async def send(self, notification: Notification) -> None: ...


Provider = Callable[["Hub", Mapping[str, Any]], Notifier]


def _checked_template(value: Any) -> str:
    """Template syntax is checked at the call; the text travels on (events stay plain JSON)."""
    return template_value(value).source


def _targets(value: Any) -> list[str]:
    values = value if isinstance(value, list | tuple) else [value]
    if not all(isinstance(v, str) and v for v in values):
        raise vol.Invalid("target is one address or a list of addresses")
    return list(values)


SERVICE_SCHEMA = vol.Schema(
    {
        vol.Required("message"): _checked_template,
        vol.Optional("title"): _checked_template,
        vol.Optional("target"): _targets,
        vol.Optional("data", default=dict): vol.Schema(dict),
    }
)


def collect_providers(hub: Hub) -> dict[str, Provider]:
    """{platform: provider} from every loaded plugin: registering needs no set-up, and a notifier
    may use a platform whose plugin has no configuration of its own."""
    providers: dict[str, Provider] = {}
    if hub.plugins is None:
        return providers
    for plugin, args, _ in hub.plugins.collect_calls("hub_notify_providers", loaded=True):
        name, provider = args[0], args[1]
        if name in providers:
            _LOGGER.error("plugin %s: notify platform %r is already registered", plugin, name)
            continue
        providers[name] = provider
    return providers


class Notifications:
    """The hub's configured notifiers and their services (kept in `hub.data["notify"]`)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.notifiers: dict[str, Notifier] = {}
        self.default: str | None = None

    @classmethod
    def of(cls, hub: Hub) -> Notifications:
        found = hub.data.get(DOMAIN)
        if found is None:
            found = hub.data[DOMAIN] = cls(hub)
        return found

    def setup(
        self, configs: Sequence[Mapping[str, Any]], providers: Mapping[str, Provider] | None = None
    ) -> None:
        """Build each notifier and register `notify.<name>`; one that fails is logged and left out,
        the others work. The `default: true` one (else the first) also answers `notify.notify`."""
        providers = collect_providers(self.hub) if providers is None else providers
        for conf in configs:
            name, platform = conf["name"], conf["platform"]
            provider = providers.get(platform)
            if provider is None:
                known = ", ".join(sorted(providers)) or "none"
                _LOGGER.error("notify.%s: no notify platform %r (known: %s)", name, platform, known)
                continue
            options = {k: v for k, v in conf.items() if k not in BASE_KEYS}
            try:
                schema = getattr(provider, "schema", None)
                if schema is not None:
                    options = vol.Schema(schema)(options)
                notifier = provider(self.hub, {**options, "name": name})
            except vol.Invalid as err:
                _LOGGER.error("notify.%s (%s): invalid configuration: %s", name, platform, err)
                continue
            except Exception as err:
                _LOGGER.error("notify.%s (%s) could not be set up: %s", name, platform, err)
                continue
            self.notifiers[name] = notifier
            if conf.get("default") or self.default is None:
                self.default = name
            self._register(name, f"Send a notification with {name} ({platform}).")
        if self.default is not None:
            self._register(DEFAULT_SERVICE, f"Send a notification with {self.default}.")

    def _register(self, service: str, description: str) -> None:
        async def handler(call: ServiceCall) -> None:
            name = self.default if service == DEFAULT_SERVICE else service
            assert name is not None
            await self.send(name, call.data, call.context)

        self.hub.services.register(DOMAIN, service, handler, SERVICE_SCHEMA, description)

    def _render(self, text: str | None, variables: Mapping[str, Any]) -> str | None:
        if text is None:
            return None
        return str(Template(text, self.hub).render(variables, parse_result=False))

    async def send(
        self,
        name: str,
        data: Mapping[str, Any],
        context: Context | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        """Render and deliver; a failure is logged, announced (`notify_failed`) and raised as
        NotifyError for the caller (an automation decides whether to go on)."""
        notifier = self.notifiers.get(name)
        if notifier is None:
            raise NotifyError(f"notify.{name} is not configured")
        try:
            notification = Notification(
                message=self._render(data["message"], variables or {}) or "",
                title=self._render(data.get("title"), variables or {}),
                target=tuple(data.get("target") or ()),
                data=dict(data.get("data") or {}),
                context=context or Context(),
            )
            await notifier.send(notification)
        except Exception as err:
            reason = str(err) if isinstance(err, NotifyError | TemplateError) else repr(err)
            message = f"notify.{name}: not sent: {reason}"
            _LOGGER.error(message)
            self.hub.bus.fire(EVENT_NOTIFY_FAILED, {"notifier": name, "error": reason}, context)
            raise NotifyError(message) from err

    async def close(self) -> None:
        """Remove the services and close the notifiers (those that have `close`)."""
        for name in [*self.notifiers, DEFAULT_SERVICE]:
            self.hub.services.remove(DOMAIN, name)
        for name, notifier in self.notifiers.items():
            close = getattr(notifier, "close", None)
            if close is None:
                continue
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                _LOGGER.exception("notify.%s: close failed", name)
        self.notifiers.clear()
        self.default = None
