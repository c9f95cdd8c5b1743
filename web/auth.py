"""Who is asking: users and roles, login sessions, API tokens, login throttling (on the hub clock).

Rows live in the recorder database (web/store.py); a small cache keeps requests off the database.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection

from hub.security import async_hash_password, async_verify_password
from web import store
from web.config import ROLES

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub
    from hub.storage.recorder import Recorder

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

EVENT_SECURITY = "http_security_event"
MIN_PASSWORD, MAX_PASSWORD = 10, 1024  # the cap keeps a megabyte "password" from costing scrypt
NAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
TOKEN_PREFIX = "evhub_"
REVALIDATE = timedelta(seconds=15)  # a cached session or token is checked again after this
TOUCH_EVERY = timedelta(seconds=60)  # how often last_seen / last_used_at reach the database
PURGE_EVERY = 3600.0
MAX_CACHED = 10_000


class AuthError(Exception):
    """A login, setup or user change was refused; the message is safe to show the user."""


class Throttled(AuthError):
    pass


def role_at_least(role: str, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def check_name(name: str) -> str:
    name = name.strip().lower()
    if not NAME.match(name):
        raise AuthError(
            "a user name is 1-64 letters, digits or . _ @ -, starting with one of a-z/0-9"
        )
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AuthError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    return role


def csrf_for(session_secret: str) -> str:
    """The session's CSRF token: derived from its secret, so nothing more is stored or leaked."""
    return hmac.new(session_secret.encode(), b"evhub-csrf", hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a browser session or an API token, with its user and role."""

    user_id: str
    name: str
    role: str
    via: str  # "session" | "token"
    key: str  # the session's id hash or the token's id
    csrf: str | None = None  # sessions only

    def may(self, role: str) -> bool:
        return role_at_least(self.role, role)


@dataclass(slots=True)
class _Cached:
    principal: Principal
    created_at: datetime
    last_seen: datetime
    persisted: datetime
    checked: datetime


@dataclass(slots=True)
class _Window:
    """Failures per key in a sliding window of hub monotonic seconds."""

    limit: int
    window: float
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def blocked(self, key: str, now: float) -> bool:
        q = self.failures.get(key)
        while q and q[0] <= now - self.window:
            q.popleft()
        return bool(q) and len(q) >= self.limit  # type: ignore[arg-type]

    def fail(self, key: str, now: float) -> None:
        self.failures.setdefault(key, deque()).append(now)
        if len(self.failures) > 50_000:  # many addresses must not grow memory without bound
            self.failures.pop(next(iter(self.failures)))

    def clear(self, key: str) -> None:
        self.failures.pop(key, None)


class Auth:
    def __init__(self, hub: Hub, conf: dict[str, Any]) -> None:
        if hub.recorder is None:
            raise RuntimeError("the web server keeps users in the recorder database")
        self.hub = hub
        self.recorder: Recorder = hub.recorder
        self.idle = timedelta(seconds=conf["session_idle_timeout"])
        self.max_age = timedelta(seconds=conf["session_max_age"])
        attempts = conf["login_attempts"]
        self._by_account = _Window(attempts["per_account"], attempts["window"])
        self._by_address = _Window(attempts["per_address"], attempts["window"])
        self._sessions: dict[str, _Cached] = {}
        self._tokens: dict[str, _Cached] = {}
        self._has_users = False
        self._dummy_hash = ""
        self._revoked: list[Callable[[str, str], None]] = []
        self._timer: Timer | None = None

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await self.recorder.migrate(store.MIGRATIONS, store.BRANCH)
        self._has_users = await self._read(store.count_users) > 0
        # Unknown names are checked against this, so they take as long as known ones.
        self._dummy_hash = await async_hash_password(secrets.token_urlsafe(16))
        self._timer = self.hub.clock.call_later(PURGE_EVERY, self._purge)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def on_revoke(self, callback: Callable[[str, str], None]) -> None:
        """`callback(kind, key)` when a session ("session", id hash), a token ("token", id) or
        all of a user's credentials ("user", user id) stop being valid: open websockets close."""
        self._revoked.append(callback)

    def _announce(self, kind: str, key: str) -> None:
        if kind == "user":
            self._sessions = {h: c for h, c in self._sessions.items() if c.principal.user_id != key}
            self._tokens = {h: c for h, c in self._tokens.items() if c.principal.user_id != key}
        for callback in self._revoked:
            try:
                callback(kind, key)
            except Exception:
                _LOGGER.exception("revocation listener failed")

    def _purge(self) -> None:
        self._timer = self.hub.clock.call_later(PURGE_EVERY, self._purge)
        now = self.hub.now()
        created, seen = now - self.max_age, now - self.idle
        self.recorder.queue_write(lambda conn: store.delete_sessions_before(conn, created, seen))

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        return await self.recorder.read(fn)

    async def _write(self, fn: Callable[[Connection], T]) -> T:
        return await self.recorder.write_fact(fn)

    def security_event(
        self, kind: str, user: str | None, address: str | None, detail: str = ""
    ) -> None:
        _LOGGER.info("security: %s user=%s from %s %s", kind, user, address, detail)
        self.hub.bus.fire(
            EVENT_SECURITY, {"type": kind, "user": user, "address": address, "detail": detail}
        )

    # --- users --------------------------------------------------------------------------
    async def needs_setup(self) -> bool:
        """True while no user exists (the CLI may add one while the hub runs: ask again)."""
        if not self._has_users:
            self._has_users = await self._read(store.count_users) > 0
        return not self._has_users

    async def create_owner(self, name: str, password: str, address: str | None) -> store.User:
        name, password = check_name(name), check_password(password)
        hashed = await async_hash_password(password)
        now = self.hub.now()
        user = await self._write(
            lambda c: store.insert_user(c, name, "admin", hashed, now, first=True)
        )
        if user is None:
            raise AuthError("an owner account exists already: log in")
        self._has_users = True
        self.security_event("owner_created", name, address)
        return user

    async def add_user(self, name: str, role: str, password: str, by: Principal) -> store.User:
        name, role = check_name(name), check_role(role)
        hashed = await async_hash_password(check_password(password))
        now = self.hub.now()
        try:
            user = await self._write(
                lambda c: store.insert_user(c, name, role, hashed, now, first=False)
            )
        except ValueError as err:
            raise AuthError(str(err)) from None
        assert user is not None
        self._has_users = True
        self.security_event("user_created", by.name, None, f"{name} as {role}")
        return user

    async def users(self) -> list[store.User]:
        return await self._read(store.list_users)

    async def change_user(
        self, user_id: str, by: Principal, *, role: str | None = None, disabled: bool | None = None
    ) -> None:
        """Change a user's role or disable them; their sessions end, and one admin must remain."""
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = check_role(role)
        if disabled is not None:
            values["disabled"] = disabled

        def fact(conn: Connection) -> None:
            store.update_user(conn, user_id, **values)
            if store.count_admins(conn) == 0:
                raise AuthError("the hub needs at least one enabled admin")

        await self._guarded(fact)
        self._announce("user", user_id)
        self.security_event("user_changed", by.name, None, f"{user_id}: {values}")

    async def delete_user(self, user_id: str, by: Principal) -> None:
        def fact(conn: Connection) -> None:
            store.delete_user(conn, user_id)
            if store.count_admins(conn) == 0:
                raise AuthError("the hub needs at least one enabled admin")

        await self._guarded(fact)
        self._announce("user", user_id)
        self.security_event("user_deleted", by.name, None, user_id)

    async def _guarded(self, fact: Callable[[Connection], None]) -> None:
        try:
            await self._write(fact)  # a raise inside rolls the fact's savepoint back
        except LookupError:
            raise AuthError("no such user") from None

    async def change_password(
        self, who: Principal, old: str, new: str, address: str, user_agent: str = ""
    ) -> tuple[str, Principal]:
        """Check the old password, store the new one, end every session and token cache of the
        user; returns a fresh session for the browser that asked (API tokens stay valid)."""
        found = await self._read(lambda c: store.user_by_id(c, who.user_id))
        if found is None or not await async_verify_password(old[:MAX_PASSWORD], found[1]):
            self.security_event("password_change_failed", who.name, address)
            raise AuthError("the current password is wrong")
        hashed = await async_hash_password(check_password(new))
        now = self.hub.now()
        await self._write(
            lambda c: store.update_user(
                c, who.user_id, password_hash=hashed, password_changed_at=now
            )
        )
        self._announce("user", who.user_id)
        self.security_event("password_changed", who.name, address)
        return await self._open_session(found[0], address, user_agent)

    # --- logging in ---------------------------------------------------------------------
    async def login(
        self, name: str, password: str, address: str, user_agent: str = "", old: str | None = None
    ) -> tuple[str, Principal]:
        """Check the password and open a new session: (session secret, principal).

        Throttled per account and per address on the hub clock; an unknown name costs the same
        scrypt as a known one. `old` (a session the browser still had) ends: ids rotate on login.
        """
        key = name.strip().lower()[:64]
        now_m = self.hub.clock.monotonic()
        if self._by_account.blocked(key, now_m) or self._by_address.blocked(address, now_m):
            self.security_event("login_throttled", key, address)
            raise Throttled("too many failed logins: wait a few minutes and try again")
        found = await self._read(lambda c: store.user_by_name(c, key))
        ok = await async_verify_password(
            password[:MAX_PASSWORD], found[1] if found else self._dummy_hash
        )
        if not ok or found is None or found[0].disabled:
            self._by_account.fail(key, now_m)
            self._by_address.fail(address, now_m)
            self.security_event("login_failed", key, address)
            raise AuthError("wrong user name or password")
        self._by_account.clear(key)
        user = found[0]
        if old:
            await self.logout(old, address=None, quiet=True)
        secret, principal = await self._open_session(user, address, user_agent)
        self.security_event("login", user.name, address)
        return secret, principal

    async def _open_session(
        self, user: store.User, address: str, user_agent: str
    ) -> tuple[str, Principal]:
        secret = secrets.token_urlsafe(32)
        id_hash = store.digest(secret)
        now = self.hub.now()
        row = {
            "id_hash": id_hash,
            "user_id": user.id,
            "created_at": now,
            "last_seen": now,
            "address": address[:64],
            "user_agent": user_agent[:255],
        }
        await self._write(lambda c: store.insert_session(c, row))
        principal = Principal(user.id, user.name, user.role, "session", id_hash, csrf_for(secret))
        self._remember(self._sessions, id_hash, _Cached(principal, now, now, now, now))
        return secret, principal

    async def session(self, secret: str) -> Principal | None:
        """The principal of a session cookie, or None (unknown, revoked, idle or too old)."""
        if not secret or len(secret) > 128:
            return None
        id_hash = store.digest(secret)
        now = self.hub.now()
        cached = self._sessions.get(id_hash)
        if cached is None or now - cached.checked > REVALIDATE:
            row = await self._read(lambda c: store.session_with_user(c, id_hash))
            if row is None or row["disabled"]:
                self._sessions.pop(id_hash, None)
                return None
            seen = max(row["last_seen"], cached.last_seen if cached else row["last_seen"])
            principal = Principal(
                row["user_id"], row["name"], row["role"], "session", id_hash, csrf_for(secret)
            )
            cached = _Cached(principal, row["created_at"], seen, row["last_seen"], now)
            self._remember(self._sessions, id_hash, cached)
        if now - cached.created_at > self.max_age or now - cached.last_seen > self.idle:
            await self.logout(secret, address=None, quiet=True)
            return None
        cached.last_seen = now
        if now - cached.persisted > TOUCH_EVERY:
            cached.persisted = now
            self.recorder.queue_write(lambda c: store.touch_session(c, id_hash, now))
        return cached.principal

    def session_deadline(self, principal: Principal) -> datetime | None:
        """When the session ends at the latest (its absolute age), for websockets to close."""
        cached = self._sessions.get(principal.key)
        return None if cached is None else cached.created_at + self.max_age

    async def logout(self, secret: str, address: str | None, quiet: bool = False) -> None:
        id_hash = store.digest(secret)
        cached = self._sessions.pop(id_hash, None)
        await self._write(lambda c: store.delete_session(c, id_hash))
        self._announce("session", id_hash)
        if not quiet:
            self.security_event("logout", cached.principal.name if cached else None, address)

    async def sessions_of(self, user_id: str) -> list[dict[str, Any]]:
        return await self._read(lambda c: store.sessions_of(c, user_id))

    # --- API tokens ---------------------------------------------------------------------
    async def create_token(self, who: Principal, name: str) -> tuple[store.Token, str]:
        """A new long-lived token for `who`'s user: (its record, the secret, shown only now)."""
        name = name.strip()
        if not 1 <= len(name) <= 64:
            raise AuthError("a token needs a name of 1-64 characters")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.hub.now()
        token = await self._write(lambda c: store.insert_token(c, who.user_id, name, secret, now))
        self.security_event("token_created", who.name, None, name)
        return token, secret

    async def tokens(self, user_id: str | None = None) -> list[store.Token]:
        return await self._read(lambda c: store.list_tokens(c, user_id))

    async def revoke_token(self, token_id: str, by: Principal, any_user: bool = False) -> bool:
        owner = None if any_user else by.user_id
        gone = await self._write(lambda c: store.delete_token(c, token_id, owner))
        if gone:
            self._tokens = {h: c for h, c in self._tokens.items() if c.principal.key != token_id}
            self._announce("token", token_id)
            self.security_event("token_revoked", by.name, None, token_id)
        return gone

    async def token(self, secret: str) -> Principal | None:
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
            return None
        token_hash = store.digest(secret)
        now = self.hub.now()
        cached = self._tokens.get(token_hash)
        if cached is None or now - cached.checked > REVALIDATE:
            row = await self._read(lambda c: store.token_with_user(c, token_hash))
            if row is None or row["disabled"]:
                self._tokens.pop(token_hash, None)
                return None
            principal = Principal(row["user_id"], row["user_name"], row["role"], "token", row["id"])
            used = row["last_used_at"] or row["created_at"]
            cached = _Cached(principal, row["created_at"], used, used, now)
            self._remember(self._tokens, token_hash, cached)
        if now - cached.persisted > TOUCH_EVERY:
            cached.persisted = now
            token_id = cached.principal.key
            self.recorder.queue_write(lambda c: store.touch_token(c, token_id, now))
        return cached.principal

    @staticmethod
    def _remember(cache: dict[str, _Cached], key: str, value: _Cached) -> None:
        if len(cache) >= MAX_CACHED and key not in cache:
            cache.pop(next(iter(cache)))
        cache[key] = value
