"""Built-in `allowlist` plugin: a small authorizer of known tokens, until an accounts plugin exists.

Tokens come from configuration.yaml (read-only at run time) and from services (kept in the
recorder's database, in the plugin's own tables). It answers `hub_authorize` for the tokens it
knows and stays silent about the others, so the core's default deny, or a later plugin, decides:

    allowlist:
      tokens:
        - id: 04A1B2C3                # any letter case: ids are compared normalised
          name: Van 17 card
          type: ISO14443              # the default
          group: FLEET                # optional parent/group id token
          expiry: 2027-01-01T00:00:00+01:00
          blocked: false
          chargers: [charger.bay_01]  # optional: only these

Every change gives the list a new version (`allowlist_changed` {version}, kept across restarts),
which the OCPP plugin uses to keep chargers' local authorization lists in sync: through the
`allowlist.local_list` service, since a plugin never imports another one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hub.charging.auth import AuthorizationResult, IdToken
from hub.core import Hub
from hub.plugins import hookimpl
from hub.services import ServiceCall
from plugins.allowlist.index import EVENT_ALLOWLIST_CHANGED, AllowList, AllowListError
from plugins.allowlist.store import BRANCH, MIGRATIONS
from plugins.allowlist.tokens import (
    ADD_SCHEMA,
    CONFIG_SCHEMA,
    ID_SCHEMA,
    LOCAL_LIST_SCHEMA,
    UPDATE_SCHEMA,
    TokenEntry,
)

DOMAIN = "allowlist"

__all__ = [
    "CONFIG_SCHEMA",
    "DOMAIN",
    "EVENT_ALLOWLIST_CHANGED",
    "AllowList",
    "AllowListError",
    "local_list",
    "local_list_changes",
]


def _allowlist(hub: Hub) -> AllowList:
    allowlist: AllowList | None = hub.data.get(DOMAIN)
    if allowlist is None:
        raise RuntimeError("the allowlist plugin is not set up on this hub")
    return allowlist


def local_list(hub: Hub, charger: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(version, entries [{id, type, status, expiry, group_id}]) for a full local-list update.

    With `charger`, tokens restricted to other chargers say NotAtThisLocation.
    """
    return _allowlist(hub).local_list(charger)


def local_list_changes(
    hub: Hub, since_version: int, charger: str | None = None
) -> list[dict[str, Any]] | None:
    """Entries changed after `since_version` (a removed token has status None), or None when the
    charger needs a full update (its version is older than the change log, or unknown)."""
    return _allowlist(hub).changes_since(since_version, charger)


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    if hub.recorder is None:
        raise RuntimeError("the allowlist plugin keeps run-time tokens in the recorder database")
    await hub.recorder.migrate(MIGRATIONS, BRANCH)
    yaml_tokens = [TokenEntry.from_data(t, from_yaml=True) for t in config[DOMAIN]["tokens"]]
    allowlist = AllowList(hub, yaml_tokens)
    await allowlist.load()
    hub.data[DOMAIN] = allowlist


@hookimpl
def hub_teardown(hub: Hub) -> None:
    hub.data.pop(DOMAIN, None)


@hookimpl
def hub_authorize(
    hub: Hub, id_token: Mapping[str, Any], charger: str
) -> AuthorizationResult | None:
    allowlist: AllowList | None = hub.data.get(DOMAIN)
    if allowlist is None:
        return None
    return allowlist.authorize(IdToken.from_hook_arg(id_token), charger)


@hookimpl
def hub_register_services(hub: Hub, register: Callable[..., None]) -> None:
    async def add_token(call: ServiceCall) -> dict[str, Any]:
        return await _allowlist(hub).add(call.data, call.context)

    async def update_token(call: ServiceCall) -> dict[str, Any]:
        return await _allowlist(hub).update(call.data, call.context)

    async def remove_token(call: ServiceCall) -> dict[str, Any]:
        return await _allowlist(hub).remove(call.data["id"], call.context)

    async def block_token(call: ServiceCall) -> dict[str, Any]:
        return await _allowlist(hub).update({**call.data, "blocked": True}, call.context)

    async def unblock_token(call: ServiceCall) -> dict[str, Any]:
        return await _allowlist(hub).update({**call.data, "blocked": False}, call.context)

    def local_list_service(call: ServiceCall) -> dict[str, Any]:
        allowlist, charger = _allowlist(hub), call.data.get("charger")
        since = call.data.get("since_version")
        changes = None if since is None else allowlist.changes_since(since, charger)
        if changes is not None:
            return {"version": allowlist.version, "update_type": "Differential", "entries": changes}
        version, entries = allowlist.local_list(charger)
        return {"version": version, "update_type": "Full", "entries": entries}

    register(DOMAIN, "add_token", add_token, ADD_SCHEMA, "Allow a token (kept in the database).")
    register(
        DOMAIN,
        "update_token",
        update_token,
        UPDATE_SCHEMA,
        "Change a run-time token; a field set to null is cleared.",
    )
    register(DOMAIN, "remove_token", remove_token, ID_SCHEMA, "Remove a run-time token.")
    register(DOMAIN, "block_token", block_token, ID_SCHEMA, "Block a run-time token.")
    register(DOMAIN, "unblock_token", unblock_token, ID_SCHEMA, "Unblock a run-time token.")
    register(
        DOMAIN,
        "local_list",
        local_list_service,
        LOCAL_LIST_SCHEMA,
        "The list for chargers' local authorization: {version, update_type, entries}; "
        "Differential (changes after since_version) when possible, else Full.",
    )
