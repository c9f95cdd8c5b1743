"""Who may connect: configured chargers, chargers approved at run time, and pending ones.

Also the per-id/per-address throttle on failed attempts and the security-event record.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from hub.security import async_hash_password, async_verify_password, is_password_hash
from hub.storage.store import JsonStore

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

EVENT_SECURITY = "ocpp_security_event"
EVENT_PENDING = "ocpp_charger_pending"
MIN_PASSWORD = 16


@dataclass(frozen=True, slots=True)
class ChargerAccount:
    id: str
    security_profile: int = 1
    password_hash: str | None = None  # scrypt, for approved chargers (stored)
    versions: tuple[str, ...] = ("ocpp1.6", "ocpp2.0.1")
    serial: str | None = None  # an mTLS certificate may carry the serial instead of the id
    status: str = "accepted"  # accepted | pending | rejected
    source: str = "config"  # config | approved | pending
    name: str | None = None


@dataclass(slots=True)
class _Throttle:
    """Sliding-window count of failures per key (charger id, address) on the hub clock."""

    limit: int
    window: float
    events: dict[str, deque[float]] = field(default_factory=dict)

    def blocked(self, key: str, now: float) -> bool:
        q = self.events.get(key)
        if not q:
            return False
        while q and q[0] <= now - self.window:
            q.popleft()
        return len(q) >= self.limit

    def fail(self, key: str, now: float) -> None:
        self.events.setdefault(key, deque()).append(now)
        if len(self.events) > 50_000:  # a scan from many addresses must not grow memory forever
            self.events.pop(next(iter(self.events)))

    def clear(self, key: str) -> None:
        self.events.pop(key, None)


class ChargerRegistry:
    """Configured chargers (YAML) plus approved/pending ones (kept in .storage/ocpp_chargers)."""

    def __init__(self, hub: Hub, conf: dict[str, Any]) -> None:
        self._hub = hub
        self.allow_pending = conf["allow_pending"]
        # Configured passwords are never kept in clear: only a keyed digest, compared in
        # constant time. A random per-process key means the digest is useless outside it.
        self._key = secrets.token_bytes(32)
        self._digests: dict[str, bytes] = {}
        self._verified: dict[str, bytes] = {}  # approved chargers: digest of a password that passed
        self.accounts: dict[str, ChargerAccount] = {}
        for item in conf["chargers"]:
            password = item.get("password")
            stored = password if password and is_password_hash(password) else None
            if password and not stored:
                self._digests[item["id"]] = self._digest(password)
            self.accounts[item["id"]] = ChargerAccount(
                id=item["id"],
                security_profile=item.get("security_profile", conf["security_profile"]),
                password_hash=stored,
                versions=tuple(item.get("ocpp", ("ocpp1.6", "ocpp2.0.1"))),
                serial=item.get("serial"),
                name=item.get("name"),
            )
        self._store = JsonStore(hub, "ocpp_chargers")
        for raw in (self._store.load() or {}).get("chargers", []):
            account = ChargerAccount(**{**raw, "versions": tuple(raw["versions"])})
            self.accounts.setdefault(account.id, account)  # YAML wins over a stale approval
        fail = conf["failed_attempts"]
        self._by_id = _Throttle(fail["per_charger"], fail["window"])
        self._by_address = _Throttle(fail["per_address"], fail["window"])

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    def _save(self) -> None:
        stored = [asdict(a) for a in self.accounts.values() if a.source != "config"]
        self._store.schedule_save(lambda: {"chargers": stored})

    def flush(self) -> None:
        self._store.flush()

    def get(self, charger_id: str) -> ChargerAccount | None:
        return self.accounts.get(charger_id)

    # --- authentication ---------------------------------------------------------------------
    async def check_password(self, account: ChargerAccount, password: str) -> bool:
        digest = self._digest(password)
        known = self._digests.get(account.id)
        if known is not None:
            return hmac.compare_digest(known, digest)
        if account.password_hash is None:
            return False
        # scrypt costs tens of ms; a charger reconnecting with the password that passed before
        # is checked against the cached digest instead.
        cached = self._verified.get(account.id)
        if cached is not None and hmac.compare_digest(cached, digest):
            return True
        if await async_verify_password(password, account.password_hash):
            self._verified[account.id] = digest
            return True
        return False

    def throttled(self, charger_id: str, address: str) -> bool:
        now = self._hub.clock.monotonic()
        return self._by_id.blocked(charger_id, now) or self._by_address.blocked(address, now)

    def failed(self, charger_id: str, address: str, reason: str) -> None:
        now = self._hub.clock.monotonic()
        self._by_id.fail(charger_id, now)
        self._by_address.fail(address, now)
        self.security_event(charger_id, "FailedToAuthenticateAtCsms", reason, address=address)

    def succeeded(self, charger_id: str) -> None:
        self._by_id.clear(charger_id)

    def security_event(
        self, charger_id: str, kind: str, detail: str = "", *, address: str | None = None
    ) -> None:
        """Security events go on the bus, so the recorder keeps them and automations can react."""
        _LOGGER.warning("security event %s for %s from %s: %s", kind, charger_id, address, detail)
        self._hub.bus.fire(
            EVENT_SECURITY,
            {"charger_id": charger_id, "type": kind, "detail": detail[:500], "address": address},
        )

    # --- pending registration -----------------------------------------------------------------
    def add_pending(self, charger_id: str, address: str) -> ChargerAccount:
        account = ChargerAccount(charger_id, 0, status="pending", source="pending")
        self.accounts[charger_id] = account
        self._save()
        self._hub.bus.fire(EVENT_PENDING, {"charger_id": charger_id, "address": address})
        return account

    def pending(self) -> list[ChargerAccount]:
        return [a for a in self.accounts.values() if a.status == "pending"]

    async def approve(
        self,
        charger_id: str,
        *,
        security_profile: int,
        password: str | None,
    ) -> ChargerAccount:
        account = self.accounts.get(charger_id)
        if account is None:
            raise KeyError(f"no charger {charger_id!r} is known or pending")
        if account.source == "config":
            raise ValueError(f"{charger_id} is configured in YAML; change it there")
        # Profile 3 authenticates by client certificate; 1 and 2 by a password.
        if security_profile in (1, 2) and (not password or len(password) < MIN_PASSWORD):
            raise ValueError(f"security profile {security_profile} needs a password of 16+ chars")
        approved = replace(
            account,
            status="accepted",
            source="approved",
            security_profile=security_profile,
            password_hash=await async_hash_password(password) if password else None,
        )
        self.accounts[charger_id] = approved
        self._verified.pop(charger_id, None)
        self._save()
        return approved

    def reject(self, charger_id: str) -> None:
        account = self.accounts.get(charger_id)
        if account is None or account.source == "config":
            raise KeyError(f"no pending or approved charger {charger_id!r}")
        self.accounts[charger_id] = replace(account, status="rejected")
        self._save()
