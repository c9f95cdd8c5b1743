"""Built-in `notify` plugin: configured notifiers become `notify.<name>` services (hub/notify.py),
and the `log` and `smtp` platforms are registered here.

    notify:
      - {name: ops_log, platform: log, level: warning}
      - name: ops_mail
        platform: smtp
        default: true              # also answers notify.notify
        host: smtp.example.com
        encryption: starttls       # starttls (port 587) | ssl (465) | none (25)
        username: evhub@example.com
        password: !secret smtp_password
        sender: evhub@example.com
        recipients: [ops@example.com]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import voluptuous as vol

from hub.core import Hub
from hub.notify import DEFAULT_SERVICE, Notifications
from hub.plugins import hookimpl
from plugins.notify.providers import LogNotifier, SmtpNotifier

DOMAIN = "notify"
PLATFORMS: dict[str, Any] = {"log": LogNotifier, "smtp": SmtpNotifier}

_BASE = {
    vol.Required("name"): vol.All(str, vol.Match(r"^[a-z0-9_]+$", msg="name: a-z, 0-9 and _ only")),
    vol.Required("platform"): vol.All(str, vol.Match(r"^[a-z0-9_]+$")),
    vol.Optional("default", default=False): bool,
}


def _notifier(value: Any) -> dict[str, Any]:
    """A built-in platform's keys are checked here, before start-up; another plugin's platform
    keys are checked by its provider's schema when the notifiers are set up."""
    if not isinstance(value, dict):
        raise vol.Invalid("expected a notifier: {name: ..., platform: ..., ...}")
    platform = PLATFORMS.get(value.get("platform"))  # type: ignore[arg-type]
    if platform is None:
        return vol.Schema(_BASE, extra=vol.ALLOW_EXTRA)(value)  # type: ignore[no-any-return]
    return vol.Schema({**_BASE, **platform.schema})(value)  # type: ignore[no-any-return]


def _unique(notifiers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for i, conf in enumerate(notifiers):
        if conf["name"] == DEFAULT_SERVICE:
            raise vol.Invalid("`notify` is the default service: choose another name", [i, "name"])
        if conf["name"] in seen:
            raise vol.Invalid(f"a second notifier named {conf['name']!r}", [i, "name"])
        seen.add(conf["name"])
    if sum(1 for c in notifiers if c["default"]) > 1:
        raise vol.Invalid("only one notifier can be the default")
    return notifiers


CONFIG_SCHEMA = vol.All(lambda v: v if isinstance(v, list) else [v], [_notifier], _unique)


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
def hub_notify_providers(register: Callable[..., None]) -> None:
    for name, provider in PLATFORMS.items():
        register(name, provider)


@hookimpl
def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    Notifications.of(hub).setup(config[DOMAIN])


@hookimpl
async def hub_teardown(hub: Hub) -> None:
    await Notifications.of(hub).close()
