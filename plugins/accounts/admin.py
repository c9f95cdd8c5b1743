"""Administrative changes: organisations, driver accounts and tokens, blocking and unblocking.

Each runs under the directory's lock, is shielded from its caller going away, and is audited.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from hub.bus import Context
from plugins.accounts import store
from plugins.accounts.directory import AccountsError, Directory
from plugins.accounts.model import Account, Organisation, Token, Window

_ORG_FIELDS = {"name": "name", "group": "group_id", "plan": "plan", "blocked": "blocked"}
_ACCOUNT_FIELDS = {
    "name": "name",
    "email": "email",
    "organisation": "organisation_id",
    "plan": "plan",
    "status": "status",
}
_TOKEN_FIELDS = {
    "type": "type",
    "label": "label",
    "group": "group_id",
    "expiry": "expiry",
    "max_concurrent": "max_concurrent",
    "chargers": "chargers",
    "sites": "sites",
    "hours": "hours",
}


def _fields(data: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    out = {names[k]: v for k, v in data.items() if k in names}
    for key in ("chargers", "sites"):
        if out.get(key) is not None:
            out[key] = tuple(out[key])
    if out.get("hours") is not None:
        out["hours"] = tuple(Window.from_data(w) for w in out["hours"])
    return out


def _new_id(prefix: str, taken: Mapping[str, Any]) -> str:
    while True:
        candidate = f"{prefix}_{secrets.token_hex(5)}"
        if candidate not in taken:
            return candidate


class Admin:
    def __init__(self, directory: Directory) -> None:
        self.d = directory

    def _audit(
        self, kind: str, account: str | None = None, token: str | None = None, **detail: Any
    ) -> dict[str, Any]:
        pseudonym = self.d.pseudonym(token) if token else None
        return {"kind": kind, "account_id": account, "token": pseudonym, "detail": detail or None}

    # --- organisations ------------------------------------------------------------------
    async def create_organisation(self, data: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        return await self.d.shielded(self._create_organisation(data, ctx))

    async def _create_organisation(self, data: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        async with self.d.lock:
            snap = self.d.snap
            org_id = data.get("id") or _new_id("org", snap.organisations)
            if org_id in snap.organisations:
                raise AccountsError("id: an organisation with this id exists")
            now = self.d.hub.now()
            org = Organisation(
                org_id,
                data["name"],
                data.get("group"),
                data.get("plan"),
                data.get("blocked", False),
                created_at=now,
                updated_at=now,
            )
            new = snap.with_(organisations={**snap.organisations, org_id: org})
            audit = [self._audit("organisation_created", organisation=org_id)]
            version = await self.d.apply(new, lambda c: store.save_organisation(c, org), ctx, audit)
            return {"version": version, "organisation": org.as_dict()}

    async def update_organisation(self, data: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        return await self.d.shielded(self._update_organisation(data, ctx))

    async def _update_organisation(self, data: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        async with self.d.lock:
            snap = self.d.snap
            old = snap.organisations.get(data["id"])
            if old is None:
                raise AccountsError("id: no organisation with this id")
            self.d.writable("organisations", old.id)
            changes = _fields(data, _ORG_FIELDS)
            org = replace(old, **changes, updated_at=self.d.hub.now())
            new = snap.with_(organisations={**snap.organisations, org.id: org})
            audit = [
                self._audit("organisation_updated", organisation=org.id, fields=sorted(changes))
            ]
            version = await self.d.apply(new, lambda c: store.save_organisation(c, org), ctx, audit)
            return {"version": version, "organisation": org.as_dict()}

    # --- accounts -----------------------------------------------------------------------
    def _check_account(self, account: Account) -> None:
        snap = self.d.snap
        if (
            account.organisation_id is not None
            and account.organisation_id not in snap.organisations
        ):
            raise AccountsError("organisation: no organisation with this id")
        other = snap.by_email(account.email) if account.email else None
        if other is not None and other.id != account.id:
            raise AccountsError("email: another account has this address")

    async def create_account(self, data: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        return await self.d.shielded(self.add_account(data, ctx))

    async def add_account(
        self, data: Mapping[str, Any], ctx: Context, *, kind: str = "account_created"
    ) -> dict[str, Any]:
        async with self.d.lock:
            snap = self.d.snap
            account_id = data.get("id") or _new_id("acct", snap.accounts)
            if account_id in snap.accounts:
                raise AccountsError("id: an account with this id exists")
            now = self.d.hub.now()
            account = Account(
                account_id,
                data["name"],
                data.get("email"),
                data.get("organisation"),
                data.get("plan"),
                data.get("status", "active"),
                created_at=now,
                updated_at=now,
            )
            self._check_account(account)
            new = snap.with_(accounts={**snap.accounts, account_id: account})
            version = await self.d.apply(
                new, lambda c: store.save_account(c, account), ctx, [self._audit(kind, account_id)]
            )
            return {"version": version, "account": self.d.account_view(account, True)}

    async def update_account(
        self, data: Mapping[str, Any], ctx: Context, **extra: Any
    ) -> dict[str, Any]:
        return await self.d.shielded(self._update_account(data, ctx, **extra))

    async def _update_account(
        self,
        data: Mapping[str, Any],
        ctx: Context,
        *,
        kind: str = "account_updated",
        also: Any = None,
        **extra: Any,
    ) -> dict[str, Any]:
        async with self.d.lock:
            snap = self.d.snap
            old = snap.accounts.get(data["id"])
            if old is None:
                raise AccountsError("id: no account with this id")
            if old.status == "erased":
                raise AccountsError("id: this account was erased")
            self.d.writable("accounts", old.id)
            changes = _fields(data, _ACCOUNT_FIELDS)
            account = replace(old, **changes, **extra, updated_at=self.d.hub.now())
            self._check_account(account)
            new = snap.with_(accounts={**snap.accounts, account.id: account})

            def write(conn: Any) -> None:
                store.save_account(conn, account)
                if also is not None:
                    also(conn)

            audit = [self._audit(kind, account.id, fields=sorted(changes))]
            version = await self.d.apply(new, write, ctx, audit)
            return {"version": version, "account": self.d.account_view(account, True)}

    # --- tokens -------------------------------------------------------------------------
    async def add_token(self, data: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        return await self.d.shielded(self._add_token(data, ctx))

    async def _add_token(self, data: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        async with self.d.lock:
            snap = self.d.snap
            data = dict(data)
            if data.get("kind") == "app":
                # An app token is the hub's own: 64 random bits, short enough for an OCPP 1.6
                # idTag (20 characters), typed Central as OCPP 2.0.1 calls such tokens.
                data.setdefault("id", "APP" + secrets.token_hex(8).upper())
                data.setdefault("type", "Central")
            elif "id" not in data:
                raise AccountsError("id: an RFID token needs the id its card sends")
            if data["id"] in snap.tokens:
                raise AccountsError("id: this token is already registered; use update_token")
            owner = data.get("account")
            if owner is not None and snap.accounts.get(owner) is None:
                raise AccountsError("account: no account with this id")
            if owner is not None and snap.accounts[owner].status == "erased":
                raise AccountsError("account: this account was erased")
            if data.get("organisation") not in (None, *snap.organisations):
                raise AccountsError("organisation: no organisation with this id")
            now = self.d.hub.now()
            token = Token.from_data(data, created_at=now, updated_at=now)
            new = snap.with_(tokens={**snap.tokens, token.id: token})
            version = await self.d.apply(
                new,
                lambda c: store.save_token(c, token),
                ctx,
                [self._audit("token_added", owner, token.id)],
            )
            return {"version": version, "token": self.d.token_view(token, True)}

    async def update_token(self, data: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        return await self.d.shielded(
            self._update_token(data["id"], _fields(data, _TOKEN_FIELDS), ctx, "token_updated")
        )

    async def block_token(self, token_id: str, reason: str | None, ctx: Context) -> dict[str, Any]:
        changes = {"blocked": True, "blocked_reason": reason}
        return await self.d.shielded(self._update_token(token_id, changes, ctx, "token_blocked"))

    async def unblock_token(self, token_id: str, ctx: Context) -> dict[str, Any]:
        changes = {"blocked": False, "blocked_reason": None}
        return await self.d.shielded(self._update_token(token_id, changes, ctx, "token_unblocked"))

    async def _update_token(
        self, token_id: str, changes: dict[str, Any], ctx: Context, kind: str
    ) -> dict[str, Any]:
        async with self.d.lock:
            snap = self.d.snap
            old = snap.tokens.get(token_id)
            if old is None:
                raise AccountsError("id: no token with this id")
            audit = [self._audit(kind, old.account_id, token_id, fields=sorted(changes))]
            if token_id in self.d.yaml_ids["tokens"]:
                return await self._block_seeded(old, changes, ctx, kind, audit)
            token = replace(old, **changes, updated_at=self.d.hub.now())
            new = snap.with_(tokens={**snap.tokens, token_id: token})
            version = await self.d.apply(new, lambda c: store.save_token(c, token), ctx, audit)
            return {"version": version, "token": self.d.token_view(token, True)}

    async def _block_seeded(
        self, token: Token, changes: dict[str, Any], ctx: Context, kind: str, audit: list[Any]
    ) -> dict[str, Any]:
        """A configured token may be blocked and unblocked at run time, nothing else."""
        if kind not in ("token_blocked", "token_unblocked"):
            self.d.writable("tokens", token.id)
        if kind == "token_unblocked" and token.blocked:
            raise AccountsError("id: this token is blocked in configuration.yaml; unblock it there")
        snap, now = self.d.snap, self.d.hub.now()
        blocks = dict(snap.blocks)
        if changes["blocked"]:
            blocks[token.id] = changes["blocked_reason"]
        else:
            blocks.pop(token.id, None)
        new = snap.with_(blocks=blocks)
        reason = changes["blocked_reason"]
        when = now if changes["blocked"] else None
        version = await self.d.apply(
            new, lambda c: store.set_block(c, token.id, reason, when), ctx, audit
        )
        return {"version": version, "token": self.d.token_view(token, True)}

    async def remove_token(self, token_id: str, ctx: Context) -> dict[str, Any]:
        return await self.d.shielded(self._remove_token(token_id, ctx))

    async def _remove_token(self, token_id: str, ctx: Context) -> dict[str, Any]:
        async with self.d.lock:
            snap = self.d.snap
            old = snap.tokens.get(token_id)
            if old is None:
                raise AccountsError("id: no token with this id")
            self.d.writable("tokens", token_id)
            tokens = {k: v for k, v in snap.tokens.items() if k != token_id}
            audit = [self._audit("token_removed", old.account_id, token_id)]
            version = await self.d.apply(
                snap.with_(tokens=tokens), lambda c: store.delete_token(c, token_id), ctx, audit
            )
            return {"version": version}
