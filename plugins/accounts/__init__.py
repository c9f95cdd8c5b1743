"""Built-in `accounts` plugin: drivers, organisations and their tokens; the hub's authorizer.

It answers `hub_authorize` for every charger protocol, keeps chargers' local lists in step
(`accounts.local_list`, version in `accounts_changed`), flags cloned cards, lets drivers register
by e-mail, and exports or erases a driver's data. See docs/accounts.md.

    accounts:
      auto_block_clones: true
      organisations: [{id: acme, name: ACME Logistics, group: ACME}]
      accounts: [{id: van17, name: Van 17 driver, organisation: acme}]
      tokens:
        - {id: 04A1B2C3, account: van17, hours: [{days: [mon, tue, wed, thu, fri],
                                                  start: "06:00", end: "20:00"}]}

A token nobody registered here gets no answer from this plugin (None): the core's default deny
applies, or another authorizer may know it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.charging.auth import AuthorizationResult, IdToken
from hub.core import Hub
from hub.plugins import hookimpl
from plugins.accounts.admin import Admin
from plugins.accounts.clones import EVENT_CLONE_SUSPECTED, CloneWatch
from plugins.accounts.directory import EVENT_ACCOUNTS_CHANGED, AccountsError, Directory, Seed
from plugins.accounts.login import Login
from plugins.accounts.mail import Mailer
from plugins.accounts.model import Account, Organisation, Token
from plugins.accounts.privacy import EVENT_ERASED, Privacy
from plugins.accounts.registration import Registration
from plugins.accounts.services import register_services
from plugins.accounts.store import BRANCH, MIGRATIONS
from plugins.accounts.validate import CONFIG_SCHEMA

DOMAIN = "accounts"

__all__ = [
    "CONFIG_SCHEMA",
    "DOMAIN",
    "EVENT_ACCOUNTS_CHANGED",
    "EVENT_CLONE_SUSPECTED",
    "EVENT_ERASED",
    "Accounts",
    "AccountsError",
]


@dataclass(slots=True)
class Accounts:
    """What the plugin keeps on the hub (`hub.data["accounts"]`)."""

    directory: Directory
    admin: Admin
    privacy: Privacy
    registration: Registration
    clones: CloneWatch
    login: Login


def seed_from(conf: Mapping[str, Any]) -> Seed:
    orgs = tuple(
        Organisation(o["id"], o["name"], o.get("group"), o.get("plan"), o["blocked"], True)
        for o in conf["organisations"]
    )
    accounts = tuple(
        Account(
            a["id"],
            a["name"],
            a.get("email"),
            a.get("organisation"),
            a.get("plan"),
            a["status"],
            True,
        )
        for a in conf["accounts"]
    )
    tokens = tuple(Token.from_data(t, from_yaml=True) for t in conf["tokens"])
    return Seed(orgs, accounts, tokens)


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    if hub.recorder is None:
        raise RuntimeError("the accounts plugin keeps its data in the recorder database")
    conf = config[DOMAIN]
    await hub.recorder.migrate(MIGRATIONS, BRANCH)
    directory = Directory(hub, seed_from(conf), conf)
    await directory.load()
    admin = Admin(directory)
    reg_conf = conf["registration"]
    mailer = Mailer(hub, reg_conf.get("notify"), conf.get("smtp"))
    clones = CloneWatch(
        directory,
        lambda token_id, reason, ctx: admin.block_token(token_id, reason, ctx),
        conf["auto_block_clones"],
    )
    directory.clones = clones
    registration = Registration(directory, admin, reg_conf, mailer)
    hub.data[DOMAIN] = Accounts(
        directory, admin, Privacy(directory), registration, clones, Login(registration)
    )


@hookimpl
def hub_teardown(hub: Hub) -> None:
    accounts: Accounts | None = hub.data.pop(DOMAIN, None)
    if accounts is not None:
        accounts.clones.close()


@hookimpl
async def hub_authorize(
    hub: Hub, id_token: Mapping[str, Any], charger: str
) -> AuthorizationResult | None:
    accounts: Accounts | None = hub.data.get(DOMAIN)
    if accounts is None:
        return None
    return await accounts.directory.authorize(IdToken.from_hook_arg(id_token), charger)


@hookimpl
def hub_register_services(hub: Hub, register: Callable[..., None]) -> None:
    register_services(hub, hub.data[DOMAIN], register)


@hookimpl
def hub_web_routes(register: Callable[..., None]) -> None:
    from plugins.accounts.web import register_routes  # aiohttp and jinja2: only when the UI runs

    register_routes(register)
