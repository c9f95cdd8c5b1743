"""The `billing:` block of configuration.yaml: plans and who gets them, invoices, e-mail,
payment providers, webhooks, OCPI identity and reconciliation thresholds (docs/billing.md).
"""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from plugins.billing.money import money_schema
from plugins.billing.plans import ASSIGN_SCHEMA, PLAN_SCHEMA, check_assignments
from plugins.billing.webhooks import EVENTS

_CURRENCY = vol.All(str, vol.Upper, vol.Match(r"^[A-Z]{3}$"))
_SECONDS = vol.All(vol.Coerce(float), vol.Range(min=0))

ISSUER_SCHEMA = vol.Schema(
    {
        vol.Optional("name", default="evhub"): str,
        vol.Optional("address"): str,
        vol.Optional("vat_id"): str,
        vol.Optional("iban"): str,
        vol.Optional("email"): str,
        vol.Optional("footer"): str,
    }
)

INVOICE_SCHEMA = vol.Schema(
    {
        vol.Optional("prefix", default="INV-"): vol.All(str, vol.Length(max=30)),
        vol.Optional("credit_note_prefix", default="CN-"): vol.All(str, vol.Length(max=30)),
        vol.Optional("yearly_series", default=True): bool,
        vol.Optional("digits", default=6): vol.All(int, vol.Range(min=1, max=12)),
        vol.Optional("payment_terms_days", default=14): vol.All(int, vol.Range(min=0)),
        # Invoices for a month are issued this many days after it ends: replays from chargers
        # that were offline at the month's end are in by then. None: only by the service.
        vol.Optional("auto_issue_after_days", default=3): vol.Any(
            None, vol.All(int, vol.Range(min=0, max=27))
        ),
        vol.Optional("email", default=False): bool,
    }
)

EMAIL_SCHEMA = vol.Schema(
    {
        vol.Required("sender"): str,
        vol.Optional("host", default="localhost"): str,
        vol.Optional("port", default=25): vol.All(int, vol.Range(min=1, max=65535)),
        vol.Optional("username"): str,
        vol.Optional("password"): str,
        vol.Optional("security", default="none"): vol.In(("none", "starttls", "tls")),
        vol.Optional("timeout", default=30.0): _SECONDS,
        vol.Optional("notify_service"): vol.Match(r"^notify\.[a-z0-9_]+$"),
        vol.Optional("bcc"): str,
    }
)

STRIPE_SCHEMA = vol.Schema(
    {
        vol.Required("api_key"): str,
        vol.Optional("webhook_secret"): str,
        vol.Optional("webhook_tolerance", default=300): vol.All(int, vol.Range(min=1)),
        vol.Optional("api_base"): vol.Url(),  # a stand-in server (tests); default Stripe's
        vol.Optional("timeout", default=30.0): _SECONDS,
        vol.Optional("preauthorize_amount", default=50): money_schema(),
        # The webhook endpoint Stripe calls: a small server of the plugin's own (plugins may not
        # add public routes to the web app).
        vol.Optional("webhook_listen"): {
            vol.Optional("host", default="0.0.0.0"): str,
            vol.Required("port"): vol.All(int, vol.Range(min=0, max=65535)),
            vol.Optional("path", default="/stripe/webhook"): str,
        },
    }
)

WEBHOOK_SCHEMA = vol.Schema(
    {
        vol.Required("name"): vol.Match(r"^[a-z0-9_]+$"),
        vol.Required("url"): vol.Url(),
        vol.Required("secret"): vol.All(str, vol.Length(min=16)),
        vol.Optional("events", default=list(EVENTS)): [vol.In(EVENTS)],
        vol.Optional("max_attempts", default=8): vol.All(int, vol.Range(min=1, max=50)),
        vol.Optional("backoff", default=30.0): vol.All(vol.Coerce(float), vol.Range(min=0.1)),
        vol.Optional("max_backoff", default=3600.0): _SECONDS,
        vol.Optional("timeout", default=10.0): _SECONDS,
    }
)

OCPI_SCHEMA = vol.Schema(
    {
        vol.Optional("country_code", default="DE"): vol.All(str, vol.Length(min=2, max=2)),
        vol.Optional("party_id", default="EVH"): vol.All(str, vol.Length(min=3, max=3)),
        vol.Optional("evse_id_prefix", default=""): str,
        vol.Optional("connector_standard", default="IEC_62196_T2"): str,
        vol.Optional("connector_format", default="SOCKET"): vol.In(("SOCKET", "CABLE")),
        vol.Optional("connector_power_type", default="AC_3_PHASE"): vol.In(
            ("AC_1_PHASE", "AC_2_PHASE", "AC_2_PHASE_SPLIT", "AC_3_PHASE", "DC")
        ),
        vol.Optional("location", default={}): {
            vol.Optional("id"): str,
            vol.Optional("name"): str,
            vol.Optional("address"): str,
            vol.Optional("city"): str,
            vol.Optional("postal_code"): str,
            vol.Optional("country"): vol.All(str, vol.Length(min=3, max=3)),
            vol.Optional("latitude"): vol.Coerce(str),
            vol.Optional("longitude"): vol.Coerce(str),
        },
    }
)

RECONCILE_SCHEMA = vol.Schema(
    {
        vol.Optional("threshold_percent", default=2): money_schema(),
        vol.Optional("threshold_kwh", default=0.5): money_schema(),
        vol.Optional("site_meter"): vol.Match(r"^[a-z0-9_]+\.[a-z0-9_]+$"),
        vol.Optional("site_threshold_percent", default=5): money_schema(),
    }
)


def _plans(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise vol.Invalid("plans is a mapping of plan name -> plan")
    return {str(k): PLAN_SCHEMA(v or {}) for k, v in value.items()}


def _check(conf: dict[str, Any]) -> dict[str, Any]:
    missing = check_assignments(conf["plans"], conf["assign"])
    if missing:
        raise vol.Invalid(f"assign refers to undefined plans: {', '.join(missing)}")
    for party, plan in conf["subscriptions"].items():
        sub = conf["plans"].get(plan, {}).get("subscription")
        if sub is None:
            raise vol.Invalid(f"subscriptions.{party}: plan {plan!r} has no subscription block")
    return conf


CONFIG_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("currency"): _CURRENCY,
            vol.Optional("plans", default={}): _plans,
            vol.Optional("assign", default={}): ASSIGN_SCHEMA,
            # Parties (organisation or account ids) paying a subscription every month, with
            # or without sessions; a session priced with a subscription plan adds its party.
            vol.Optional("subscriptions", default={}): {str: str},
            vol.Optional("customers", default={}): {
                str: {
                    vol.Optional("name"): str,
                    vol.Optional("email"): str,
                    vol.Optional("address"): str,
                }
            },
            vol.Optional("issuer", default={}): ISSUER_SCHEMA,
            vol.Optional("invoices", default={}): INVOICE_SCHEMA,
            vol.Optional("templates"): str,
            vol.Optional("email"): EMAIL_SCHEMA,
            vol.Optional("payments", default={}): {
                vol.Optional("invoice", default={}): vol.Any(None, {}),
                vol.Optional("stripe"): STRIPE_SCHEMA,
            },
            vol.Optional("webhooks", default=[]): [WEBHOOK_SCHEMA],
            vol.Optional("ocpi", default={}): OCPI_SCHEMA,
            vol.Optional("reconciliation", default={}): RECONCILE_SCHEMA,
            vol.Optional("site"): str,
            vol.Optional("estimate_interval", default=60.0): vol.All(
                vol.Coerce(float), vol.Range(min=5)
            ),
            # A session stopped before the plugin was first set up is not billed by the
            # catch-up; neither is one stopped longer ago than this.
            vol.Optional("catch_up_days", default=45): vol.All(int, vol.Range(min=0)),
        }
    ),
    _check,
)
