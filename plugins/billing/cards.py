"""Stripe's webhooks: verified, deduplicated by event id, applied to payments (authorized after
3-D Secure, captured, canceled, refunded from the dashboard); an optional listener of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import Connection, insert, select

from plugins.billing.money import from_minor
from plugins.billing.payments import AUTHORIZED, CANCELED, FAILED, Payments
from plugins.billing.stripe_provider import StripeProvider, WebhookRejected
from plugins.billing.tables import stripe_events

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # Stripe's events are a few KB


class StripeWebhooks:
    def __init__(self, hub: Hub, provider: StripeProvider, payments: Payments) -> None:
        self.hub, self.provider, self.payments = hub, provider, payments
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def handle(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """Verify and apply one webhook; raises WebhookRejected (the caller answers 400)."""
        event = self.provider.verify_webhook(payload, signature)
        event_id, kind = str(event.get("id")), str(event.get("type"))
        if not await self._first_time(event_id, kind):
            return {"event": event_id, "type": kind, "duplicate": True}
        obj = event.get("data", {}).get("object", {})
        try:
            applied = await self._apply(kind, obj)
        except Exception:
            _LOGGER.exception("stripe event %s (%s) could not be applied", event_id, kind)
            applied = False
        return {"event": event_id, "type": kind, "applied": applied}

    async def _first_time(self, event_id: str, kind: str) -> bool:
        now = self.hub.clock.now()

        def fact(conn: Connection) -> bool:
            seen = conn.execute(select(stripe_events.c.id).where(stripe_events.c.id == event_id))
            if seen.first() is not None:
                return False
            conn.execute(insert(stripe_events).values(id=event_id, type=kind[:64], received_at=now))
            return True

        assert self.hub.recorder is not None
        first: bool = await self.hub.recorder.write_fact(fact)
        return first

    async def _apply(self, kind: str, obj: Mapping[str, Any]) -> bool:
        intent_id = obj.get("payment_intent") if kind.startswith("charge.") else obj.get("id")
        payment = await self.payments.by_external(str(intent_id)) if intent_id else None
        if payment is None:
            return False  # not one of ours (another system on the same Stripe account)
        currency = payment["currency"]
        if kind == "payment_intent.amount_capturable_updated" or (
            kind.startswith("payment_intent.") and obj.get("status") == "requires_capture"
        ):
            held = from_minor(int(obj.get("amount_capturable") or 0), currency)
            await self.payments.set_status(payment["id"], AUTHORIZED, held)
        elif kind == "payment_intent.succeeded":
            taken = from_minor(int(obj.get("amount_received") or 0), currency)
            await self.payments.book_capture(payment["id"], taken)
        elif kind == "payment_intent.canceled":
            await self.payments.set_status(payment["id"], CANCELED, None)
        elif kind == "payment_intent.payment_failed":
            await self.payments.set_status(payment["id"], FAILED, None)
        elif kind in ("charge.refunded", "charge.refund.updated"):
            for refund in obj.get("refunds", {}).get("data", []):
                if refund.get("status") in ("succeeded", "pending"):
                    amount = from_minor(int(refund["amount"]), currency)
                    await self.payments.book_refund(payment["id"], amount, str(refund["id"]))
        else:
            return False
        return True

    # --- the listener ---------------------------------------------------------------------
    async def listen(self, host: str, port: int, path: str) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(path, self._http)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        _LOGGER.info("stripe webhooks on %s:%s%s", host, self.port, path)

    async def _http(self, request: web.Request) -> web.Response:
        payload = await request.read()
        try:
            result = await self.handle(payload, request.headers.get("Stripe-Signature"))
        except WebhookRejected as err:
            _LOGGER.warning("stripe webhook refused: %s", err)
            return web.json_response({"error": str(err)}, status=400)
        return web.json_response(result)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
