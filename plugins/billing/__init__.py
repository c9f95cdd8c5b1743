"""Built-in `billing` plugin: price plans, CDRs, invoices, payments, exports and reconciliation.

Every finished session (`session_stopped`) becomes an immutable CDR priced from its raw meter
readings; invoices are issued per party and month, numbered without gaps; money movements are
a double-entry ledger. Configuration (all of it in docs/billing.md):

    billing:
      currency: EUR
      plans:
        standard:
          tax_rate: 19
          session_fee: 0.50
          energy: {price: 0.39, periods: [{name: peak, start: "17:00", end: "21:00",
                                           days: [mon, tue, wed, thu, fri], price: 0.49}]}
          idle: {per_minute: 0.10, grace_minutes: 30}
      assign: {default: standard, organisations: {acme: fleet}}
      payments: {invoice: {}, stripe: {api_key: !secret stripe_key, webhook_secret: ...}}

Talks to other plugins only through services (`accounts.lookup_token`, `notify.<name>`) and
events; answers `hub_authorize` for its own ad-hoc card tokens only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from hub.charging.auth import AuthorizationResult, AuthorizationStatus, IdToken
from hub.core import Hub
from hub.plugins import hookimpl
from plugins.billing.cards import StripeWebhooks
from plugins.billing.config import CONFIG_SCHEMA
from plugins.billing.engine import EVENT_CDR_CREATED, EVENT_COST_UPDATED, BillingEngine
from plugins.billing.office import EVENT_INVOICE_ISSUED, Office
from plugins.billing.payments import (
    ADHOC_PREFIX,
    AUTHORIZED,
    BankTransfer,
    PaymentProvider,
    Payments,
)
from plugins.billing.services import register_services
from plugins.billing.stripe_provider import StripeProvider
from plugins.billing.tables import BRANCH, MIGRATIONS
from plugins.billing.webhooks import Target, WebhookSender

DOMAIN = "billing"
_LOGGER = logging.getLogger(__name__)

__all__ = [
    "CONFIG_SCHEMA",
    "DOMAIN",
    "EVENT_CDR_CREATED",
    "EVENT_COST_UPDATED",
    "EVENT_INVOICE_ISSUED",
    "Billing",
]

BUILTIN_PROVIDERS: dict[str, Any] = {"invoice": BankTransfer, "stripe": StripeProvider}


class Billing:
    """Everything the plugin runs on one hub (`hub.data["billing"]`)."""

    def __init__(self, hub: Hub, conf: Mapping[str, Any]) -> None:
        self.hub, self.conf = hub, conf
        self.payments = Payments(hub, {})
        self.webhooks = WebhookSender(hub, [Target(**t) for t in conf["webhooks"]])
        self.engine = BillingEngine(hub, conf, self.payments, self.webhooks)
        self.office = Office(hub, conf, self.engine)
        self.stripe_webhooks: StripeWebhooks | None = None

    async def start(self) -> None:
        assert self.hub.recorder is not None
        await self.hub.recorder.migrate(MIGRATIONS, BRANCH)
        self.payments.providers = self._providers()
        await self.webhooks.start()
        await self.engine.start()
        self.office.schedule()
        stripe = next(
            (p for p in self.payments.providers.values() if isinstance(p, StripeProvider)), None
        )
        if stripe is not None:
            self.stripe_webhooks = StripeWebhooks(self.hub, stripe, self.payments)
            listen = (self.conf["payments"].get("stripe") or {}).get("webhook_listen")
            if listen:
                await self.stripe_webhooks.listen(listen["host"], listen["port"], listen["path"])

    def _providers(self) -> dict[str, PaymentProvider]:
        """Configured providers, built by the factories plugins registered (this one too)."""
        factories = dict(BUILTIN_PROVIDERS)
        if self.hub.plugins is not None:
            factories.update(self.hub.plugins.collect("hub_payment_providers"))
        providers: dict[str, PaymentProvider] = {}
        for name, conf in self.conf["payments"].items():
            factory = factories.get(name)
            if factory is None:
                _LOGGER.error("payment provider %s: no plugin provides it", name)
                continue
            providers[name] = factory(self.hub, {"name": name, **dict(conf or {})})
        return providers

    async def stop(self) -> None:
        self.engine.stop()
        self.office.stop()
        if self.stripe_webhooks is not None:
            await self.stripe_webhooks.close()
        await self.webhooks.stop()
        await self.payments.close()


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    if hub.recorder is None:
        raise RuntimeError("billing keeps CDRs, invoices and the ledger in the recorder database")
    billing = Billing(hub, config[DOMAIN])
    hub.data[DOMAIN] = billing
    try:
        await billing.start()
    except BaseException:
        hub.data.pop(DOMAIN, None)
        await billing.stop()
        raise


@hookimpl
async def hub_teardown(hub: Hub) -> None:
    billing: Billing | None = hub.data.pop(DOMAIN, None)
    if billing is not None:
        await billing.stop()


@hookimpl
def hub_register_services(hub: Hub, register: Callable[..., None]) -> None:
    billing: Billing | None = hub.data.get(DOMAIN)
    if billing is not None:
        register_services(billing, register)


@hookimpl
def hub_payment_providers(register: Callable[..., None]) -> None:
    """The built-in providers, registered the way any plugin registers its own."""
    for name, factory in BUILTIN_PROVIDERS.items():
        register(name, factory)


@hookimpl
async def hub_authorize(
    hub: Hub, id_token: Mapping[str, Any], charger: str
) -> AuthorizationResult | None:
    """Ad-hoc card tokens (`PAY...`) are ours: accepted while their hold is authorized and no
    session uses them yet; every other token is left to the other authorizers."""
    billing: Billing | None = hub.data.get(DOMAIN)
    token = IdToken.from_hook_arg(dict(id_token))
    if billing is None or not token.id.startswith(ADHOC_PREFIX):
        return None
    payment = await billing.payments.adhoc(token.id)
    if payment is None:
        return None
    if payment["status"] != AUTHORIZED:
        return AuthorizationResult(
            AuthorizationStatus.INVALID, source=DOMAIN, reason=f"card payment {payment['status']}"
        )
    wanted = payment["doc"].get("charger")
    if wanted and wanted != charger:
        return AuthorizationResult(
            AuthorizationStatus.NOT_AT_THIS_LOCATION,
            source=DOMAIN,
            reason="the card was authorized for another charger",
        )
    if payment["session_id"]:
        return AuthorizationResult(
            AuthorizationStatus.CONCURRENT_TX, source=DOMAIN, reason="the card payment is in use"
        )
    return AuthorizationResult(AuthorizationStatus.ACCEPTED, source=DOMAIN)
