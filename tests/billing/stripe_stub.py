"""A local stand-in for the few Stripe API endpoints billing uses (the real one is unreachable
here): payment intents with manual capture, capture, cancel, refunds; idempotency keys honoured;
form-encoded requests and JSON answers as Stripe's; test cards decide what happens.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import stripe
from aiohttp import web

API_KEY = "sk_test_evhub_0123456789"
WEBHOOK_SECRET = "whsec_evhub_test_secret_0123456789"
CARD_OK = "pm_card_visa"
CARD_3DS = "pm_card_threeDSecureRequired"
CARD_DECLINED = "pm_card_chargeDeclined"


def _form(data: Any) -> dict[str, Any]:
    """Stripe's bracket encoding back into a dict (metadata[charger]=x -> {"metadata": {...}})."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if "[" in key:
            outer, inner = key.split("[", 1)
            inner = inner.rstrip("]")
            target = out.setdefault(outer, {} if not inner.isdigit() else [])
            if isinstance(target, list):
                target.append(value)
            else:
                target[inner] = value
        else:
            out[key] = value
    return out


class StripeStub:
    def __init__(self) -> None:
        self.intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any], str | None]] = []
        self._idempotent: dict[str, tuple[int, dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/payment_intents", self.create)
        app.router.add_get("/v1/payment_intents/{id}", self.retrieve)
        app.router.add_post("/v1/payment_intents/{id}/capture", self.capture)
        app.router.add_post("/v1/payment_intents/{id}/cancel", self.cancel)
        app.router.add_post("/v1/refunds", self.refund)
        return app

    async def _call(self, request: web.Request, handler: Any) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "authentication_error", "Invalid API Key provided")
        params = _form(await request.post())
        key = request.headers.get("Idempotency-Key")
        self.requests.append((request.method, request.path, params, key))
        if key is not None and key in self._idempotent:
            status, body = self._idempotent[key]
            return web.json_response(body, status=status)
        status, body = handler(request, params)
        if key is not None:
            self._idempotent[key] = (status, body)
        return web.json_response(body, status=status)

    async def create(self, request: web.Request) -> web.Response:
        return await self._call(request, self._create)

    def _create(self, request: web.Request, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        pid = f"pi_{next(self._ids):08d}"
        amount = int(p["amount"])
        status = "requires_payment_method"
        if p.get("confirm") == "true":
            method = p.get("payment_method")
            if method == CARD_DECLINED:
                return 402, _body("card_error", "Your card was declined.")
            status = "requires_action" if method == CARD_3DS else "requires_capture"
        intent = {
            "id": pid,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": amount if status == "requires_capture" else 0,
            "amount_received": 0,
            "currency": p["currency"],
            "status": status,
            "capture_method": p.get("capture_method", "automatic"),
            "client_secret": f"{pid}_secret_abc",
            "metadata": p.get("metadata", {}),
            "payment_method": p.get("payment_method"),
        }
        self.intents[pid] = intent
        return 200, intent

    async def retrieve(self, request: web.Request) -> web.Response:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _error(404, "invalid_request_error", "No such payment_intent")
        return web.json_response(intent)

    async def capture(self, request: web.Request) -> web.Response:
        return await self._call(request, self._capture)

    def _capture(self, request: web.Request, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = self.intents[request.match_info["id"]]
        if intent["status"] != "requires_capture":
            return 400, _body("invalid_request_error", f"status is {intent['status']}")
        amount = int(p.get("amount_to_capture", intent["amount_capturable"]))
        if amount > intent["amount_capturable"]:
            return 400, _body("invalid_request_error", "amount_to_capture exceeds the hold")
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return 200, intent

    async def cancel(self, request: web.Request) -> web.Response:
        return await self._call(request, self._cancel)

    def _cancel(self, request: web.Request, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = self.intents[request.match_info["id"]]
        intent.update(status="canceled", amount_capturable=0)
        return 200, intent

    async def refund(self, request: web.Request) -> web.Response:
        return await self._call(request, self._refund)

    def _refund(self, request: web.Request, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = self.intents[p["payment_intent"]]
        done = sum(
            r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"]
        )
        amount = int(p.get("amount", intent["amount_received"] - done))
        if amount > intent["amount_received"] - done:
            return 400, _body("invalid_request_error", "refund exceeds the captured amount")
        rid = f"re_{next(self._ids):08d}"
        refund = {
            "id": rid,
            "object": "refund",
            "amount": amount,
            "status": "succeeded",
            "payment_intent": intent["id"],
            "currency": intent["currency"],
        }
        self.refunds[rid] = refund
        return 200, refund


def _body(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response(_body(kind, message), status=status)


@asynccontextmanager
async def stripe_stub() -> AsyncIterator[StripeStub]:
    stub = StripeStub()
    runner = web.AppRunner(stub.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        await runner.cleanup()


def signed_event(
    event: dict[str, Any], timestamp: int, secret: str = WEBHOOK_SECRET
) -> tuple[bytes, str]:
    """A webhook body and its Stripe-Signature header, signed the way Stripe signs them."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
    return payload.encode(), header
