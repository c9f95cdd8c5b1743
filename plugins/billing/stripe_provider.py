"""The card provider on the official Stripe SDK: manual-capture payment intents, refunds, and
webhooks checked with Stripe's own `Webhook.construct_event` (freshness on the hub clock).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import stripe

from plugins.billing.payments import ProviderResult, status_from_stripe

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 300  # seconds a signed webhook stays valid, as Stripe's own default


class WebhookRejected(ValueError):
    """A webhook whose signature or timestamp does not check out (the message says which)."""


class StripeProvider:
    """Talks to Stripe (or, in tests, a local stand-in at `api_base`) with the async client.

    The SDK's own retries sleep on the wall clock, so they are off: every call carries an
    idempotency key, and a caller that retries (on the hub clock) gets the same answer.
    """

    kind = "card"

    def __init__(self, hub: Hub, conf: Mapping[str, Any]) -> None:
        self.name = str(conf.get("name", "stripe"))
        self._hub = hub
        self._secret = conf.get("webhook_secret")  # never logged
        self.tolerance = int(conf.get("webhook_tolerance", DEFAULT_TOLERANCE))
        timeout = aiohttp.ClientTimeout(total=float(conf.get("timeout", 30)))
        self._http = stripe.AIOHTTPClient(timeout=timeout)
        addresses: dict[str, str] = {}
        if conf.get("api_base"):
            addresses["api"] = str(conf["api_base"]).rstrip("/")
        self._client = stripe.StripeClient(
            conf["api_key"],
            http_client=self._http,
            base_addresses=addresses,  # type: ignore[arg-type]
            max_network_retries=0,
        )
        self._pi = self._client.v1.payment_intents
        self._refunds = self._client.v1.refunds

    def __repr__(self) -> str:
        return f"<StripeProvider {self.name}>"  # no key, whatever prints it

    async def preauthorize(
        self,
        amount_minor: int,
        currency: str,
        *,
        metadata: Mapping[str, str],
        payment_method: str | None,
        customer: str | None,
        key: str,
    ) -> ProviderResult:
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "capture_method": "manual",  # a hold now, the final amount at the stop
            "payment_method_types": ["card"],
            "metadata": dict(metadata),
        }
        if payment_method:
            params.update(payment_method=payment_method, confirm=True)
        if customer:
            params["customer"] = customer
        intent = await self._pi.create_async(params, {"idempotency_key": key})  # type: ignore[arg-type]
        return _result(intent)

    async def capture(self, external_id: str, amount_minor: int, key: str) -> ProviderResult:
        intent = await self._pi.capture_async(
            external_id, {"amount_to_capture": amount_minor}, {"idempotency_key": key}
        )
        return _result(intent)

    async def cancel(self, external_id: str, key: str) -> ProviderResult:
        intent = await self._pi.cancel_async(external_id, None, {"idempotency_key": key})
        return _result(intent)

    async def refund(self, external_id: str, amount_minor: int, key: str) -> ProviderResult:
        created = await self._refunds.create_async(
            {"payment_intent": external_id, "amount": amount_minor}, {"idempotency_key": key}
        )
        refund = _plain(created)
        return ProviderResult(
            external_id=external_id,
            status=str(refund.get("status")),
            refund_id=str(refund["id"]),
            raw=refund,
        )

    def verify_webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event of a webhook request, after Stripe's SDK checked its signature and the
        hub clock its age (the SDK's own age check reads the wall clock, so it is turned off)."""
        if not self._secret:
            raise WebhookRejected("no webhook secret is configured")
        try:
            event = stripe.Webhook.construct_event(payload, signature, self._secret, tolerance=0)
        except stripe.SignatureVerificationError as err:
            raise WebhookRejected(f"bad signature: {err.user_message or err}") from None
        except ValueError:
            raise WebhookRejected("the body is not JSON") from None
        sent = _timestamp(signature or "")
        age = self._hub.clock.now().timestamp() - sent
        if abs(age) > self.tolerance:
            raise WebhookRejected(f"timestamp {sent} is {age:.0f} s from the hub's clock")
        return _plain(event)

    async def close(self) -> None:
        await self._http.close_async()


def _timestamp(header: str) -> int:
    for item in header.split(","):
        name, _, value = item.partition("=")
        if name.strip() == "t":
            return int(value)
    raise WebhookRejected("no timestamp in the signature header")


def _result(obj: Any) -> ProviderResult:
    intent = _plain(obj)
    return ProviderResult(
        external_id=str(intent["id"]),
        status=status_from_stripe(str(intent["status"])),
        authorized_minor=int(intent.get("amount_capturable") or 0),
        captured_minor=int(intent.get("amount_received") or 0),
        client_secret=intent.get("client_secret"),
        raw={"status": str(intent["status"])},
    )


def _plain(value: Any) -> Any:
    if isinstance(value, stripe.StripeObject):
        return {k: _plain(v) for k, v in value.to_dict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
