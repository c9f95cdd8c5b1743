"""Driver sessions of the portal (`/portal/...`): drivers are accounts of the accounts plugin, not
users of the web UI, so they get their own cookie and their own small server-side store.

A session is a 256-bit random secret in the cookie `evhub_driver` (HttpOnly, SameSite=Lax so a
scanned QR code opens the portal logged in, Secure behind TLS); the hub keeps only its sha256, in
memory (a restart logs drivers out), with the idle and absolute limits of operator sessions on
the hub clock. The CSRF token is derived from the secret, as for operator sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.core import Hub

DRIVER_COOKIE = "evhub_driver"
DRIVER_PRE_COOKIE = "evhub_driver_pre"  # double-submit token of the login forms
MAX_SESSIONS = 50_000


def driver_csrf(secret: str) -> str:
    return hmac.new(secret.encode(), b"evhub-driver-csrf", hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Driver:
    """A logged-in driver: the account id the accounts plugin vouched for."""

    account_id: str
    key: str  # the session's id hash
    csrf: str


@dataclass(slots=True)
class _Entry:
    account_id: str
    created_at: datetime
    last_seen: datetime


class DriverSessions:
    def __init__(self, hub: Hub, conf: dict[str, Any]) -> None:
        self.hub = hub
        self.idle = timedelta(seconds=conf["session_idle_timeout"])
        self.max_age = timedelta(seconds=conf["session_max_age"])
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    @staticmethod
    def _hash(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def open(self, account_id: str, old: str | None = None) -> str:
        """A new session for the account (ids rotate at every login); returns its secret."""
        if old:
            self.end(old)
        secret = secrets.token_urlsafe(32)
        now = self.hub.now()
        self._entries[self._hash(secret)] = _Entry(account_id, now, now)
        while len(self._entries) > MAX_SESSIONS:
            self._entries.popitem(last=False)
        return secret

    def get(self, secret: str | None) -> Driver | None:
        if not secret or len(secret) > 128:
            return None
        key = self._hash(secret)
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.hub.now()
        if now - entry.created_at > self.max_age or now - entry.last_seen > self.idle:
            del self._entries[key]
            return None
        entry.last_seen = now
        self._entries.move_to_end(key)
        return Driver(entry.account_id, key, driver_csrf(secret))

    def end(self, secret: str) -> None:
        self._entries.pop(self._hash(secret), None)

    def end_account(self, account_id: str) -> None:
        """Log an account out everywhere (it was disabled or erased)."""
        for key in [k for k, e in self._entries.items() if e.account_id == account_id]:
            del self._entries[key]
