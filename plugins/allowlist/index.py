"""The allow-list in memory: YAML tokens plus run-time tokens, the list version and its changes.

Authorization reads only this index; every change is a recorder fact first, then the index moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection

from hub.bus import Context
from hub.charging.auth import AuthorizationResult, IdToken, pseudonym_key, pseudonymize
from plugins.allowlist import store
from plugins.allowlist.tokens import TokenEntry, fingerprint, removed_entry

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.storage.recorder import Recorder

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

EVENT_ALLOWLIST_CHANGED = "allowlist_changed"
MAX_CHANGES = 1000  # changes kept for differential updates; older chargers get the full list

# Service data key -> TokenEntry attribute, for update_token.
_FIELDS = {
    "type": "type",
    "name": "name",
    "group": "group_id",
    "expiry": "expiry",
    "blocked": "blocked",
    "chargers": "chargers",
}


class AllowListError(ValueError):
    """A change the allow-list refuses; the message starts with the field it is about."""


class AllowList:
    """Build, then `await load()` before answering anything."""

    def __init__(self, hub: Hub, yaml_tokens: Iterable[TokenEntry]) -> None:
        self.hub = hub
        self.version = 0
        self._yaml = {e.id: e for e in yaml_tokens}
        self._runtime: dict[str, TokenEntry] = {}
        self._index: dict[str, TokenEntry] = {}
        self._changes: deque[tuple[int, str, str]] = deque()  # (version, id, type)
        self._complete_after = 0  # the change log holds every change after this version
        self._lock = asyncio.Lock()

    @property
    def _recorder(self) -> Recorder:
        if self.hub.recorder is None:
            raise RuntimeError("the allow-list keeps its tokens in the recorder's database")
        return self.hub.recorder

    def _pseudonym(self, token_id: str) -> str:
        return pseudonymize(token_id, pseudonym_key(self.hub))

    # --- start --------------------------------------------------------------------------
    async def load(self) -> None:
        version, stored, runtime = await self._recorder.read(store.load)
        self._runtime = {e.id: e for e in runtime}
        for token_id in self._yaml.keys() & self._runtime.keys():
            _LOGGER.warning(
                "token %s is in configuration.yaml and in the database: the YAML entry applies",
                self._pseudonym(token_id),
            )
        self._index = {**self._runtime, **self._yaml}
        current = fingerprint(self._yaml.values())
        if current != stored:
            # configuration.yaml changed since the last run (or this is the first): chargers
            # must see a new version, and no change log can tell them what changed.
            version = await self._recorder.write_fact(lambda c: store.bump_version(c, current))
            self.hub.bus.fire(EVENT_ALLOWLIST_CHANGED, {"version": version})
        self.version = self._complete_after = version
        _LOGGER.info(
            "allow-list version %d: %d tokens from configuration.yaml, %d added at run time",
            version,
            len(self._yaml),
            len(self._runtime),
        )

    # --- answers ------------------------------------------------------------------------
    def authorize(self, token: IdToken, charger: str) -> AuthorizationResult | None:
        """The entry's answer, or None for a token this list does not know (let others answer)."""
        entry = self._index.get(token.id)
        return None if entry is None else entry.decide(charger, self.hub.clock.now())

    def get(self, token_id: str) -> TokenEntry | None:
        return self._index.get(token_id)

    def local_list(self, charger: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        now = self.hub.clock.now()
        entries = [self._index[k].list_entry(charger, now) for k in sorted(self._index)]
        return self.version, entries

    def changes_since(
        self, since_version: int, charger: str | None = None
    ) -> list[dict[str, Any]] | None:
        """Entries changed after `since_version` (removed ones without status); None when only a
        full update can bring a charger at that version up to date."""
        if since_version == self.version:
            return []
        if since_version < self._complete_after or since_version > self.version:
            return None
        changed: dict[str, str] = {}
        for version, token_id, token_type in self._changes:
            if version > since_version:
                changed.pop(token_id, None)  # re-insert: ordered by each token's last change
                changed[token_id] = token_type
        now = self.hub.clock.now()
        return [
            self._index[k].list_entry(charger, now) if k in self._index else removed_entry(k, t)
            for k, t in changed.items()
        ]

    # --- changes ------------------------------------------------------------------------
    async def add(self, data: Mapping[str, Any], context: Context) -> dict[str, Any]:
        return await self._shielded(self._add(data, context))

    async def update(self, data: Mapping[str, Any], context: Context) -> dict[str, Any]:
        return await self._shielded(self._update(data, context))

    async def remove(self, token_id: str, context: Context) -> dict[str, Any]:
        return await self._shielded(self._remove(token_id, context))

    def _shielded(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        # A caller that goes away (a closed web request) must not leave the database changed
        # and the index not: the change runs to its end as a tracked task of its own.
        return asyncio.shield(self.hub.create_task(coro, "allowlist change"))

    async def _add(self, data: Mapping[str, Any], context: Context) -> dict[str, Any]:
        async with self._lock:
            self._writable(data["id"], exists=False)
            now = self.hub.clock.now()
            entry = TokenEntry.from_data(data, created_at=now, updated_at=now)
            version = await self._write(lambda c: store.insert_token(c, entry))
            self._committed(version, entry, context, "added")
            return {"version": version, "token": entry.as_dict()}

    async def _update(self, data: Mapping[str, Any], context: Context) -> dict[str, Any]:
        async with self._lock:
            old = self._writable(data["id"], exists=True)
            new = replace(old, **{_FIELDS[k]: v for k, v in data.items() if k in _FIELDS})
            if new == old:  # nothing changed: no new version for chargers to fetch
                return {"version": self.version, "token": old.as_dict()}
            new = replace(new, updated_at=self.hub.clock.now())
            version = await self._write(lambda c: store.update_token(c, new))
            self._committed(version, new, context, "updated")
            return {"version": version, "token": new.as_dict()}

    async def _remove(self, token_id: str, context: Context) -> dict[str, Any]:
        async with self._lock:
            old = self._writable(token_id, exists=True)
            version = await self._write(lambda c: store.delete_token(c, token_id))
            self._committed(version, old, context, "removed", removed=True)
            return {"version": version}

    def _writable(self, token_id: str, *, exists: bool) -> TokenEntry:
        if token_id in self._yaml:
            raise AllowListError(
                "id: this token is defined in configuration.yaml (allowlist.tokens) and is "
                "read-only at run time; change it there and restart"
            )
        entry = self._runtime.get(token_id)
        if exists and entry is None:
            raise AllowListError("id: no token with this id in the allow-list")
        if not exists and entry is not None:
            raise AllowListError(
                "id: this token is already in the allow-list; use allowlist.update_token"
            )
        return entry  # type: ignore[return-value]  # None only when exists=False

    async def _write(self, change: Callable[[Connection], None]) -> int:
        def fact(conn: Connection) -> int:
            change(conn)
            return store.bump_version(conn)

        return await self._recorder.write_fact(fact)

    def _committed(
        self, version: int, entry: TokenEntry, context: Context, what: str, removed: bool = False
    ) -> None:
        if removed:
            self._runtime.pop(entry.id, None)
            self._index.pop(entry.id, None)
        else:
            self._runtime[entry.id] = self._index[entry.id] = entry
        self.version = version
        self._changes.append((version, entry.id, entry.type))
        if len(self._changes) > MAX_CHANGES:
            self._complete_after = self._changes.popleft()[0]
        _LOGGER.info(
            "allow-list: token %s %s (version %d)", self._pseudonym(entry.id), what, version
        )
        self.hub.bus.fire(EVENT_ALLOWLIST_CHANGED, {"version": version}, context)
