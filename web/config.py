"""The `http:` block of configuration.yaml: where the web UI and API listen and how they guard it.

Only voluptuous here, so `evhub check-config` validates the block without loading aiohttp.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import voluptuous as vol

ROLES = ("viewer", "operator", "admin")  # each may do what the ones before it may

# Services an operator may not call: they change who or what is trusted, what runs on a charger,
# or the hub itself. Patterns are `domain.service` or `domain.*`.
ADMIN_SERVICES = (
    "ocpp.approve_charger",
    "ocpp.reject_charger",
    "ocpp.call",
    "ocpp.change_configuration",
    "ocpp.update_firmware",
    "ocpp.data_transfer",
    "allowlist.*",
    "system.*",
    "automation.reload",
)


def _network(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise vol.Invalid(f"{value!r} is not an IP address or network (like 10.0.0.0/8)") from None


def _service_pattern(value: Any) -> str:
    text = str(value)
    domain, dot, service = text.partition(".")
    if not dot or not domain or not service:
        raise vol.Invalid(f"{text!r}: expected domain.service or domain.*")
    return text


_PORT = vol.All(int, vol.Range(min=0, max=65535))
_SECONDS = vol.All(vol.Coerce(float), vol.Range(min=10))

HTTP_SCHEMA = vol.Schema(
    {
        # Loopback by default: exposing the hub to a network is a decision, not an accident.
        vol.Optional("host", default="127.0.0.1"): str,
        vol.Optional("port", default=8123): _PORT,
        vol.Inclusive("ssl_certificate", "tls"): str,
        vol.Inclusive("ssl_key", "tls"): str,
        # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed; nobody else's.
        vol.Optional("trusted_proxies", default=[]): [_network],
        # auto: Secure cookies when the browser came over TLS (directly or via a trusted proxy).
        vol.Optional("secure_cookies", default="auto"): vol.In(["auto", "always"]),
        vol.Optional("session_idle_timeout", default=3600.0): _SECONDS,
        vol.Optional("session_max_age", default=43_200.0): _SECONDS,
        vol.Optional("login_attempts", default={}): {
            vol.Optional("per_account", default=5): vol.All(int, vol.Range(min=1)),
            vol.Optional("per_address", default=20): vol.All(int, vol.Range(min=1)),
            vol.Optional("window", default=900.0): _SECONDS,
        },
        vol.Optional("admin_services", default=list(ADMIN_SERVICES)): [_service_pattern],
        # Messages a websocket client may fall behind by before it is disconnected.
        vol.Optional("websocket_queue", default=512): vol.All(int, vol.Range(min=16)),
    }
)


def validate(conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """The block with every default filled in (tests build hubs with `validate({...})`)."""
    return dict(HTTP_SCHEMA(dict(conf or {})))
