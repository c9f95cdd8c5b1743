"""The `accounts.*` services: the admin workflow, registration, privacy, and what other plugins
ask (billing: `lookup_token`, `get_account`; charger plugins: `local_list`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hub.charging.auth import pseudonym_key, pseudonymize
from hub.services import ServiceCall
from plugins.accounts import store
from plugins.accounts.validate import plain, service_schemas

if TYPE_CHECKING:
    from hub.core import Hub
    from plugins.accounts import Accounts

DOMAIN = "accounts"
ERASED_PREFIX = "ERASED-"

DESCRIPTIONS = {
    "create_organisation": "Create an organisation (a fleet, a company); its group is the "
    "parent id its tokens carry.",
    "update_organisation": "Change an organisation; blocked blocks all its tokens.",
    "create_account": "Create a driver account (active unless status says otherwise).",
    "update_account": "Change a driver account; status disabled blocks all its tokens.",
    "add_token": "Register an RFID card or (kind app, id generated) an app token with its limits.",
    "update_token": "Change a token's type, label, group, expiry and limits; null clears a field.",
    "block_token": "Block a token everywhere at once (configured tokens too).",
    "unblock_token": "Lift a block set at run time.",
    "remove_token": "Remove a run-time token.",
    "lookup_token": "{account_id, organisation_id, group, plan, name, ...} of a token, or null.",
    "get_account": "One account with its tokens and organisation, or null.",
    "list_accounts": "Organisations and accounts with their tokens (raw ids only with raw_ids).",
    "export_driver": "Everything the hub holds about one driver, as JSON.",
    "erase_driver": "Erase a driver's personal data; billing records keep a pseudonym.",
    "register": "Self-registration: a pending driver and a verification code by e-mail.",
    "verify": "Confirm a registration with the e-mailed code; the driver becomes active.",
    "login_code": "Driver portal: mail a single-use login code to an active account's address.",
    "login_verify": "Driver portal: the account id when the e-mailed login code is right, else "
    "null.",
    "local_list": "The list for chargers' local authorization: {version, update_type, entries}; "
    "Differential (changes after since_version) when possible, else Full.",
}


def register_services(hub: Hub, accounts: Accounts, register: Callable[..., None]) -> None:
    schemas = service_schemas(lambda token: pseudonymize(token, pseudonym_key(hub)))
    d, admin, privacy = accounts.directory, accounts.admin, accounts.privacy

    async def lookup_token(data: dict[str, Any]) -> dict[str, Any] | None:
        token_id = data["id_token"]
        if token_id.startswith(ERASED_PREFIX):  # the pseudonym an erased card's sessions carry
            pseudonym = token_id[len(ERASED_PREFIX) :].lower()
            row = await d.recorder.read(lambda c: store.erased_token(c, pseudonym))
            if row is None:
                return None
            return {
                "account_id": row["account_id"],
                "organisation_id": row["organisation_id"],
                "group": row["group_id"],
                "plan": row["plan"],
                "name": None,
                "type": row["type"],
                "status": "Erased",
                "pseudonym": pseudonym,
            }
        return d.lookup(token_id)

    def get_account(data: dict[str, Any]) -> dict[str, Any] | None:
        account = d.snap.accounts.get(data["id"])
        if account is None:
            return None
        org = d.snap.organisations.get(account.organisation_id or "")
        return {
            **d.account_view(account, data["raw_ids"]),
            "organisation_info": org.as_dict() if org else None,
        }

    def list_accounts(data: dict[str, Any]) -> dict[str, Any]:
        wanted_status, search = data.get("status"), (data.get("search") or "").casefold()
        found = []
        for account in sorted(d.snap.accounts.values(), key=lambda a: a.id):
            if wanted_status is None and account.status == "erased":
                continue
            if wanted_status is not None and account.status != wanted_status:
                continue
            if data.get("organisation") not in (None, account.organisation_id):
                continue
            words = " ".join(filter(None, (account.id, account.name, account.email))).casefold()
            if search and search not in words:
                continue
            found.append(d.account_view(account, data["raw_ids"]))
        orgs = [o.as_dict() for o in sorted(d.snap.organisations.values(), key=lambda o: o.id)]
        pool = [
            d.token_view(t, data["raw_ids"]) for t in d.snap.tokens.values() if t.account_id is None
        ]
        return {
            "version": d.version,
            "organisations": orgs,
            "accounts": found,
            "organisation_tokens": pool,
        }

    def local_list(data: dict[str, Any]) -> dict[str, Any]:
        charger, since = data.get("charger"), data.get("since_version")
        changes = None if since is None else d.changes_since(since, charger)
        if changes is not None:
            return {"version": d.version, "update_type": "Differential", "entries": changes}
        version, entries = d.local_list(charger)
        return {"version": version, "update_type": "Full", "entries": entries}

    handlers: dict[str, Callable[[dict[str, Any], ServiceCall], Awaitable[Any] | Any]] = {
        "create_organisation": lambda data, call: admin.create_organisation(data, call.context),
        "update_organisation": lambda data, call: admin.update_organisation(data, call.context),
        "create_account": lambda data, call: admin.create_account(data, call.context),
        "update_account": lambda data, call: admin.update_account(data, call.context),
        "add_token": lambda data, call: admin.add_token(data, call.context),
        "update_token": lambda data, call: admin.update_token(data, call.context),
        "block_token": lambda data, call: admin.block_token(
            data["id"], data.get("reason"), call.context
        ),
        "unblock_token": lambda data, call: admin.unblock_token(data["id"], call.context),
        "remove_token": lambda data, call: admin.remove_token(data["id"], call.context),
        "lookup_token": lambda data, call: lookup_token(data),
        "get_account": lambda data, call: get_account(data),
        "list_accounts": lambda data, call: list_accounts(data),
        "export_driver": lambda data, call: privacy.export(
            data["account_id"], data["raw_ids"], call.context
        ),
        "erase_driver": lambda data, call: privacy.erase(data["account_id"], call.context),
        "register": lambda data, call: accounts.registration.register(
            data["email"], data["name"], call.context
        ),
        "verify": lambda data, call: accounts.registration.verify(
            data["email"], data["code"], call.context
        ),
        "login_code": lambda data, call: accounts.login.send(data["email"], call.context),
        "login_verify": lambda data, call: accounts.login.verify(data["email"], data["code"]),
        "local_list": lambda data, call: local_list(data),
    }

    def bind(handler: Callable[[dict[str, Any], ServiceCall], Any]) -> Callable[[ServiceCall], Any]:
        # Handlers see plain values; the call_service event keeps the redacted ones.
        return lambda call: handler(plain(call.data), call)

    for name, handler in handlers.items():
        register(DOMAIN, name, bind(handler), schemas[name], DESCRIPTIONS[name])
