"""Built-in `ocpp` plugin: evhub as an OCPP 1.6J / 2.0.1 central system (CSMS).

Chargers connect to ws[s]://HOST:PORT/ocpp/{id}; each connector becomes a `charger.*` entity.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import voluptuous as vol

from hub.core import Hub
from hub.plugins import hookimpl
from hub.security import is_password_hash
from hub.storage.sessions import SessionStore
from plugins.ocpp.chargers import MIN_PASSWORD, ChargerRegistry
from plugins.ocpp.server import OcppServer
from plugins.ocpp.services import register_services
from plugins.ocpp.transactions import Transactions

DOMAIN = "ocpp"
_LOGGER = logging.getLogger(__name__)
VERSIONS = ("ocpp1.6", "ocpp2.0.1")


def _version(value: Any) -> str:
    text = str(value).lower().removeprefix("ocpp")
    name = f"ocpp{text}"
    if name not in VERSIONS:
        raise vol.Invalid(f"unknown OCPP version {value!r}; use 1.6 or 2.0.1")
    return name


def _charger(item: dict[str, Any]) -> dict[str, Any]:
    password = item.get("password")
    if password is not None and not is_password_hash(password) and len(password) < MIN_PASSWORD:
        raise vol.Invalid(f"password must be at least {MIN_PASSWORD} characters", ["password"])
    return item


def _unique_ids(chargers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for index, item in enumerate(chargers):
        if item["id"] in seen:
            raise vol.Invalid(f"charger id {item['id']!r} appears twice", [index, "id"])
        seen.add(item["id"])
    return chargers


_PORT = vol.All(int, vol.Range(min=0, max=65535))

CHARGER_SCHEMA = vol.All(
    {
        vol.Required("id"): vol.Match(r"^[A-Za-z0-9_.:\-]{1,48}$", msg="1-48 of A-Z a-z 0-9 _.:-"),
        vol.Optional("name"): str,
        vol.Optional("security_profile"): vol.In([0, 1, 2, 3]),
        vol.Optional("password"): str,
        vol.Optional("ocpp"): [_version],
        vol.Optional("serial"): str,
    },
    _charger,
)

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default="0.0.0.0"): str,
        vol.Optional("port", default=9000): _PORT,
        vol.Optional("path_prefix", default="/ocpp"): str,
        vol.Optional("tls"): {
            vol.Required("port"): _PORT,
            vol.Required("certfile"): str,
            vol.Required("keyfile"): str,
            vol.Optional("ca_certs"): str,
        },
        vol.Optional("security_profile", default=1): vol.In([0, 1, 2, 3]),
        vol.Optional("allow_pending", default=False): bool,
        vol.Optional("heartbeat_interval", default=300): vol.All(int, vol.Range(min=10)),
        vol.Optional("pending_interval", default=60): vol.All(int, vol.Range(min=5)),
        vol.Optional("call_timeout", default=30.0): vol.All(vol.Coerce(float), vol.Range(min=1)),
        vol.Optional("ping_interval", default=60.0): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("max_frame_bytes", default=262_144): vol.All(int, vol.Range(min=4096)),
        vol.Optional("max_message_bytes", default=4_194_304): vol.All(int, vol.Range(min=4096)),
        vol.Optional("backlog", default=4096): vol.All(int, vol.Range(min=16)),
        vol.Optional("failed_attempts", default={}): {
            vol.Optional("per_charger", default=5): vol.All(int, vol.Range(min=1)),
            vol.Optional("per_address", default=20): vol.All(int, vol.Range(min=1)),
            vol.Optional("window", default=300.0): vol.All(vol.Coerce(float), vol.Range(min=1)),
        },
        vol.Optional("chargers", default=[]): vol.All([CHARGER_SCHEMA], _unique_ids),
        # where chargers fetch firmware and send logs, when not the address they connect to
        vol.Optional("public_url"): vol.Match(r"^https?://[^/\s]+$", msg="http(s)://host[:port]"),
        # the service that gives local authorization lists (the authorizing plugin's)
        vol.Optional("local_list_service", default="allowlist.local_list"): vol.Match(
            r"^[a-z0-9_]+\.[a-z0-9_]+$"
        ),
    }
)


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    if hub.recorder is None:
        raise RuntimeError("the ocpp plugin records transactions and needs the recorder")
    conf = config[DOMAIN]
    transactions = Transactions(hub, SessionStore(hub.recorder))
    await transactions.load_active()
    server = OcppServer(hub, conf, ChargerRegistry(hub, conf), transactions)
    hub.data[DOMAIN] = server
    await server.start()


@hookimpl
async def hub_teardown(hub: Hub) -> None:
    server: OcppServer | None = hub.data.pop(DOMAIN, None)
    if server is not None:
        await server.stop()


@hookimpl
def hub_register_services(hub: Hub, register: Callable[..., None]) -> None:
    register_services(hub, hub.data[DOMAIN], register)
