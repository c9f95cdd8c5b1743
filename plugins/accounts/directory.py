"""The accounts directory in memory: organisations, drivers and tokens, the list version, answers.

Authorization reads only this; every change is a recorder fact first, then the snapshot moves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection

from hub.bus import Context
from hub.charging.auth import (
    AuthorizationResult,
    AuthorizationStatus,
    IdToken,
    pseudonym_key,
    pseudonymize,
)
from plugins.accounts import activity, store
from plugins.accounts.model import (
    SOURCE,
    Account,
    Decision,
    Organisation,
    Owner,
    Token,
    decide,
    erased_marker,
    list_entry,
    removed_entry,
    signature,
)

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.storage.recorder import Recorder

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

EVENT_ACCOUNTS_CHANGED = "accounts_changed"
_CONNECTOR = re.compile(r"_\d+$")  # charger.bay_01_1 is connector 1 of charger.bay_01
CLEAR_CACHE = ("ocpp", "clear_cache")  # {charger_id}: the OCPP plugin's ClearCache
MAX_CHANGES = 1000  # changes kept for differential updates; older chargers get the full list


class AccountsError(ValueError):
    """A change or request the directory refuses; the message starts with the field it is about."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the directory knows at one list version; replaced whole on every change."""

    organisations: Mapping[str, Organisation] = field(default_factory=dict)
    accounts: Mapping[str, Account] = field(default_factory=dict)
    tokens: Mapping[str, Token] = field(default_factory=dict)
    blocks: Mapping[str, str | None] = field(default_factory=dict)  # runtime blocks of YAML tokens

    def owner(self, token: Token) -> Owner:
        account = self.accounts.get(token.account_id) if token.account_id else None
        org_id = account.organisation_id if account is not None else token.organisation_id
        return Owner(account, self.organisations.get(org_id) if org_id else None)

    def effective(self, token: Token) -> Token:
        """The token with a runtime block of its YAML seed applied."""
        if token.id in self.blocks and not token.blocked:
            return replace(token, blocked=True, blocked_reason=self.blocks[token.id])
        return token

    def with_(self, **changes: Any) -> Snapshot:
        return replace(self, **{k: dict(v) for k, v in changes.items()})

    def by_email(self, email: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.email == email), None)


@dataclass(frozen=True, slots=True)
class Seed:
    organisations: tuple[Organisation, ...] = ()
    accounts: tuple[Account, ...] = ()
    tokens: tuple[Token, ...] = ()

    def fingerprint(self) -> str:
        """Changes whenever the YAML seed changes, so an edited configuration bumps the version."""
        rows = [
            [repr(o) for o in self.organisations],
            [repr(a) for a in self.accounts],
            [repr(t) + t.id for t in self.tokens],
        ]
        return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


class Directory:
    """Build, then `await load()` before answering anything."""

    def __init__(self, hub: Hub, seed: Seed, options: Mapping[str, Any]) -> None:
        self.hub = hub
        self.seed = seed
        self.options = options
        self.snap = Snapshot()
        self.version = 0
        self.yaml_ids: dict[str, frozenset[str]] = {
            "organisations": frozenset(o.id for o in seed.organisations),
            "accounts": frozenset(a.id for a in seed.accounts),
            "tokens": frozenset(t.id for t in seed.tokens),
        }
        self._changes: deque[tuple[int, str, str]] = deque()  # (version, token id, type)
        self._complete_after = 0  # the change log holds every change after this version
        self.lock = asyncio.Lock()
        self.clones: Any = None  # the CloneWatch, told about refusals for ConcurrentTx

    @property
    def recorder(self) -> Recorder:
        if self.hub.recorder is None:
            raise RuntimeError("the accounts plugin keeps its data in the recorder's database")
        return self.hub.recorder

    def pseudonym(self, token_id: str) -> str:
        return pseudonymize(token_id, pseudonym_key(self.hub))

    # --- start --------------------------------------------------------------------------
    async def load(self) -> None:
        loaded = await self.recorder.read(store.load)
        stored = {
            "organisations": {o.id: o for o in loaded.organisations},
            "accounts": {a.id: a for a in loaded.accounts},
            "tokens": {t.id: t for t in loaded.tokens},
        }
        seeded = {
            "organisations": {o.id: o for o in self.seed.organisations},
            "accounts": {a.id: a for a in self.seed.accounts},
            "tokens": {t.id: t for t in self.seed.tokens},
        }
        for kind, items in seeded.items():
            for clash in items.keys() & stored[kind].keys():
                shown = self.pseudonym(clash) if kind == "tokens" else clash
                _LOGGER.warning(
                    "%s %s is in configuration.yaml and in the database: the YAML entry applies",
                    kind[:-1],
                    shown,
                )
        self.snap = Snapshot(
            {**stored["organisations"], **seeded["organisations"]},
            {**stored["accounts"], **seeded["accounts"]},
            {**stored["tokens"], **seeded["tokens"]},
            {k: v for k, v in loaded.blocks.items() if k in seeded["tokens"]},
        )
        version = loaded.version
        current = self.seed.fingerprint()
        if current != loaded.fingerprint:
            # The seed changed since the last run (or this is the first): chargers must see a new
            # version, and no change log can tell them what changed.
            version = await self.recorder.write_fact(lambda c: store.bump_version(c, current))
            self.hub.bus.fire(EVENT_ACCOUNTS_CHANGED, {"version": version})
        self.version = self._complete_after = version
        _LOGGER.info(
            "accounts version %d: %d organisations, %d accounts, %d tokens (%d from configuration)",
            version,
            len(self.snap.organisations),
            len(self.snap.accounts),
            len(self.snap.tokens),
            len(self.seed.tokens),
        )

    # --- answers ------------------------------------------------------------------------
    def site_path(self, charger: str | None) -> tuple[str, ...] | None:
        site = self.hub.site
        if site is None or charger is None:
            return None
        for candidate in dict.fromkeys((charger, _CONNECTOR.sub("", charger))):
            try:
                return tuple(n.id for n in site.path_to(candidate))
            except KeyError:
                continue
        return None

    def decide(self, token: Token, charger: str | None) -> Decision:
        token = self.snap.effective(token)
        return decide(
            token,
            self.snap.owner(token),
            charger,
            self.hub.now(),
            self.hub.time_zone,
            self.site_path(charger),
        )

    async def authorize(self, id_token: IdToken, charger: str) -> AuthorizationResult | None:
        """The token's answer, or None for a token nobody registered here (let others answer)."""
        token = self.snap.tokens.get(id_token.id)
        if token is None:
            return None
        decision = self.decide(token, charger)
        status, reason = decision.status, decision.reason
        if status is AuthorizationStatus.ACCEPTED and token.max_concurrent is not None:
            since = self.hub.now() - activity.LOOKBACK
            seen = await self.recorder.read(lambda c: activity.sessions_of(c, token.id, since))
            busy = activity.busy_elsewhere(seen, charger)
            if len(busy) >= token.max_concurrent:
                status = AuthorizationStatus.CONCURRENT_TX
                where = sorted({s.entity or s.station for s in busy})
                reason = f"already charging on {', '.join(where)}"
                if self.clones is not None:
                    self.clones.presented(token, charger, busy)
        accepted = status is AuthorizationStatus.ACCEPTED
        return AuthorizationResult(
            status, decision.cache_until if accepted else None, decision.group_id, reason, SOURCE
        )

    def lookup(self, token_id: str) -> dict[str, Any] | None:
        """What billing needs about a token: account, organisation, group, plan, name."""
        token = self.snap.tokens.get(token_id)
        if token is None:
            return None
        owner = self.snap.owner(token)
        account, org = owner.account, owner.organisation
        return {
            "account_id": account.id if account else None,
            "organisation_id": org.id if org else None,
            "group": token.group_id or (org.group_id if org else None),
            "plan": (account.plan if account else None) or (org.plan if org else None),
            "name": account.name if account else (org.name if org else None),
            "type": token.type,
            "kind": token.kind,
            "status": str(self.decide(token, None).status),
            "pseudonym": self.pseudonym(token.id),
        }

    def token_view(self, token: Token, raw: bool) -> dict[str, Any]:
        """A token for a service result: its raw id only when an administrator asked for it."""
        effective = self.snap.effective(token)
        return {
            "id": token.id if raw else None,
            "pseudonym": self.pseudonym(token.id),
            "masked": "****" + (token.id[-4:] if len(token.id) >= 8 else ""),
            **effective.as_dict(),
            "status": str(self.decide(token, None).status),
        }

    def account_view(self, account: Account, raw: bool) -> dict[str, Any]:
        own = [t for t in self.snap.tokens.values() if t.account_id == account.id]
        return {**account.as_dict(), "tokens": [self.token_view(t, raw) for t in own]}

    def local_list(self, charger: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        entries = [e for k in sorted(self.snap.tokens) if (e := self._entry(k, charger))]
        return self.version, entries

    def _entry(self, token_id: str, charger: str | None) -> dict[str, Any] | None:
        token = self.snap.effective(self.snap.tokens[token_id])
        return list_entry(
            token,
            self.snap.owner(token),
            charger,
            self.hub.now(),
            self.hub.time_zone,
            self.site_path(charger),
        )

    def changes_since(
        self, since_version: int, charger: str | None = None
    ) -> list[dict[str, Any]] | None:
        """Entries changed after `since_version` (left-out ones without status); None when only
        a full update can bring a charger at that version up to date."""
        if since_version == self.version:
            return []
        if since_version < self._complete_after or since_version > self.version:
            return None
        changed: dict[str, str] = {}
        for version, token_id, token_type in self._changes:
            if version > since_version:
                changed.pop(token_id, None)  # re-insert: ordered by each token's last change
                changed[token_id] = token_type
        out = []
        for token_id, token_type in changed.items():
            entry = self._entry(token_id, charger) if token_id in self.snap.tokens else None
            out.append(entry or removed_entry(token_id, token_type))
        return out

    # --- changes ------------------------------------------------------------------------
    async def shielded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a change to its end even if the caller goes away (a closed web request must not
        leave the database changed and the directory not): a tracked task of its own."""

        async def run() -> tuple[T | None, AccountsError | None]:
            try:
                return await coro, None
            except AccountsError as err:  # a refusal for the caller, not a task failure to log
                return None, err

        result, refused = await asyncio.shield(self.hub.create_task(run(), "accounts change"))
        if refused is not None:
            raise refused
        return result  # type: ignore[return-value]  # None only with a refusal

    async def apply(
        self,
        new: Snapshot,
        write: Callable[[Connection], Any],
        context: Context,
        audit: Iterable[dict[str, Any]] = (),
    ) -> int:
        """Commit `write` (and audit rows) and move to `new`; the list version moves only when a
        token's local-list entry may have changed. Call with `lock` held. Returns the version."""
        old = self.snap
        changed = _changed_tokens(old, new)
        rows = [{"time": self.hub.now(), "user_id": context.user_id, **r} for r in audit]

        def fact(conn: Connection) -> int | None:
            write(conn)
            for row in rows:
                store.add_audit(conn, row)
            return store.bump_version(conn) if changed else None

        version = await self.recorder.write_fact(fact)
        self.snap = new
        if version is None:
            return self.version
        revoked = [t for t in changed if self._accepted(old, t) and not self._accepted(new, t)]
        if revoked:
            self.hub.create_task(self._clear_caches(revoked), "accounts clear caches")
        self.version = version
        for token_id in changed:
            token = new.tokens.get(token_id) or old.tokens[token_id]
            self._changes.append((version, token_id, token.type))
        while len(self._changes) > MAX_CHANGES:
            self._complete_after = self._changes.popleft()[0]
        _LOGGER.info("accounts: %d token(s) changed (version %d)", len(changed), version)
        self.hub.bus.fire(EVENT_ACCOUNTS_CHANGED, {"version": version}, context)
        return version

    def _accepted(self, snap: Snapshot, token_id: str) -> bool:
        token = snap.tokens.get(token_id)
        if token is None:
            return False
        token = snap.effective(token)
        return (
            decide(token, snap.owner(token), None, self.hub.now(), self.hub.time_zone, None).status
            is AuthorizationStatus.ACCEPTED
        )

    async def _clear_caches(self, token_ids: list[str]) -> None:
        """A charger may have cached a revoked token as Accepted and would let it charge offline
        (a local list entry wins over the cache, but not every charger keeps a list): clear the
        cache of every station the token charged at, through the charger plugin's service."""
        if not self.hub.services.has(*CLEAR_CACHE):
            return
        tags = [*token_ids, *(erased_marker(self.pseudonym(t)) for t in token_ids)]
        stations = await self.recorder.read(lambda c: activity.stations_of(c, tags))
        for station in stations:
            try:
                await self.hub.services.call(*CLEAR_CACHE, {"charger_id": station})
            except Exception as err:  # offline, or not that plugin's charger: its list decides
                _LOGGER.debug("accounts: cache of %s not cleared: %s", station, err)

    def writable(self, kind: str, item_id: str) -> None:
        if item_id in self.yaml_ids[kind]:
            raise AccountsError(
                f"id: this {kind[:-1]} is defined in configuration.yaml (accounts.{kind}) and is "
                "read-only at run time; change it there and restart"
            )


def _changed_tokens(old: Snapshot, new: Snapshot) -> list[str]:
    changed = []
    for token_id in old.tokens.keys() | new.tokens.keys():
        before, after = old.tokens.get(token_id), new.tokens.get(token_id)
        if before is None or after is None:
            changed.append(token_id)
            continue
        before, after = old.effective(before), new.effective(after)
        if signature(before, old.owner(before)) != signature(after, new.owner(after)):
            changed.append(token_id)
    return sorted(changed)
