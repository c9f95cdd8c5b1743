"""Signed webhooks to ERP and fleet systems: a durable outbox, HMAC-SHA256 over a timestamped
body, retries with exponential backoff on the hub clock; a delivery id lets receivers dedupe.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy import Connection, func, insert, select, update

from hub.storage.schema import json_dumps
from plugins.billing.tables import webhooks

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

EVENT_WEBHOOK_FAILED = "billing_webhook_failed"
SIGNATURE_HEADER = "X-Evhub-Signature"
EVENT_HEADER = "X-Evhub-Event"
DELIVERY_HEADER = "X-Evhub-Delivery"
EVENTS = (
    "session_started",
    "session_stopped",
    "cdr_created",
    "invoice_issued",
    "credit_note_issued",
    "payment_received",
    "payment_refunded",
)


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    url: str
    secret: str  # never logged
    events: tuple[str, ...] = EVENTS
    max_attempts: int = 8
    backoff: float = 30.0  # seconds before the first retry; doubles each time
    max_backoff: float = 3600.0
    timeout: float = 10.0

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {self.url!r})"

    def delay(self, attempts: int) -> float:
        return float(min(self.backoff * 2 ** max(0, attempts - 1), self.max_backoff))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.

    The timestamp is inside what is signed, so a receiver that rejects old timestamps (say,
    five minutes) cannot be fed a replayed delivery.
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """What a receiver does (and our tests do): check the MAC, then the age."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", "")) and abs(now - timestamp) <= tolerance


class WebhookSender:
    def __init__(self, hub: Hub, targets: Sequence[Target]) -> None:
        self.hub = hub
        self.targets = {t.name: t for t in targets}
        self._session: aiohttp.ClientSession | None = None
        self._timer: Timer | None = None
        self._lock = asyncio.Lock()
        self._again = False
        self._closed = False

    async def start(self) -> None:
        if self.targets:
            self._session = aiohttp.ClientSession()
            self.kick()  # deliveries left over from before a restart

    async def stop(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        async with self._lock:
            if self._session is not None:
                await self._session.close()

    async def enqueue(self, event: str, payload: Mapping[str, Any]) -> int:
        """Write one delivery per subscribed target (durable), then try to send them."""
        wanted = [t for t in self.targets.values() if event in t.events]
        if not wanted or self._closed:
            return 0
        now = self.hub.clock.now()
        rows = [
            {
                "delivery_id": uuid.uuid4().hex,
                "target": t.name,
                "event": event,
                "payload": dict(payload),
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for t in wanted
        ]
        assert self.hub.recorder is not None
        await self.hub.recorder.write_fact(lambda conn: conn.execute(insert(webhooks), rows))
        self.kick()
        return len(rows)

    def kick(self) -> None:
        if not self._closed and self._session is not None:
            self.hub.create_task(self._pump(), "billing webhooks")

    async def _pump(self) -> None:
        if self._lock.locked():
            self._again = True  # the running pump looks once more before it stops
            return
        async with self._lock:
            while True:
                self._again = False
                now = self.hub.clock.now()
                due = await self._read(lambda conn, now=now: _due(conn, now))
                for row in due:
                    if self._closed:
                        return
                    await self._deliver(row)
                if not self._again and not due:
                    break
            self._schedule(await self._read(_next_due))

    def _schedule(self, when: datetime | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if when is None else self.hub.clock.call_at(when, self.kick)

    async def _deliver(self, row: Mapping[str, Any]) -> None:
        target = self.targets.get(row["target"])
        if target is None or self._session is None:
            return  # a target removed from the configuration: its deliveries wait, unsent
        now = self.hub.clock.now()
        body = json_dumps(
            {
                "id": row["delivery_id"],
                "event": row["event"],
                "created": row["created_at"].isoformat(),
                "data": row["payload"],
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: row["event"],
            DELIVERY_HEADER: row["delivery_id"],
            SIGNATURE_HEADER: sign(target.secret, int(now.timestamp()), body),
        }
        error = None
        try:
            timeout = aiohttp.ClientTimeout(total=target.timeout)
            async with self._session.post(
                target.url, data=body, headers=headers, timeout=timeout
            ) as response:
                if response.status >= 300:
                    error = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            error = f"{type(err).__name__}: {err}"[:200]
        await self._record(row, target, error)

    async def _record(self, row: Mapping[str, Any], target: Target, error: str | None) -> None:
        now, attempts = self.hub.clock.now(), row["attempts"] + 1
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if error is None:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None)
        elif attempts >= target.max_attempts:
            values.update(status="failed", next_attempt_at=None)
            _LOGGER.error(
                "webhook %s to %s failed %d times, giving up: %s",
                row["event"],
                target.name,
                attempts,
                error,
            )
            self.hub.bus.fire(
                EVENT_WEBHOOK_FAILED,
                {
                    "target": target.name,
                    "event": row["event"],
                    "delivery_id": row["delivery_id"],
                    "error": error,
                },
            )
        else:
            values["next_attempt_at"] = now + timedelta(seconds=target.delay(attempts))
            _LOGGER.info(
                "webhook %s to %s: %s; retry %d at %s",
                row["event"],
                target.name,
                error,
                attempts,
                values["next_attempt_at"].isoformat(),
            )
        assert self.hub.recorder is not None
        await self.hub.recorder.write_fact(
            lambda conn: conn.execute(
                update(webhooks).where(webhooks.c.id == row["id"]).values(values)
            )
        )

    async def _read(self, fn: Any) -> Any:
        assert self.hub.recorder is not None
        return await self.hub.recorder.read(fn)

    async def deliveries(self) -> list[dict[str, Any]]:
        return await self._read(
            lambda conn: [
                dict(r) for r in conn.execute(select(webhooks).order_by(webhooks.c.id)).mappings()
            ]
        )


def _due(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    query = (
        select(webhooks)
        .where(webhooks.c.status == "pending", webhooks.c.next_attempt_at <= now)
        .order_by(webhooks.c.next_attempt_at, webhooks.c.id)
        .limit(100)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def _next_due(conn: Connection) -> datetime | None:
    query = select(func.min(webhooks.c.next_attempt_at)).where(webhooks.c.status == "pending")
    value: datetime | None = conn.execute(query).scalar()
    return value
