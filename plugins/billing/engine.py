"""The billing engine on a hub: each finished session becomes a CDR (once), corrections, and the
live price of running sessions (a sensor per connector and `billing_cost_updated` events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.bus import Event
from hub.charging.auth import pseudonym_key, pseudonymize
from hub.charging.session import Session, SessionStatus
from hub.entities import Entity
from hub.storage.sessions import SessionStore
from plugins.billing import store
from plugins.billing.cdr import CORRECTION, CREDIT, Cdr, build_cdr, credit_for, price, who_from
from plugins.billing.money import fmt
from plugins.billing.payments import ADHOC_PREFIX
from plugins.billing.plans import PlanBook, PricePlan, Who
from plugins.billing.store import BillingError

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub
    from plugins.billing.payments import Payments
    from plugins.billing.webhooks import WebhookSender

_LOGGER = logging.getLogger(__name__)

# What every charger plugin fires when a session starts and stops (data: session_id,
# charger_id, connector, transaction_id, entity_id, id_tag).
EVENT_SESSION_STARTED = "session_started"
EVENT_SESSION_STOPPED = "session_stopped"
EVENT_CDR_CREATED = "billing_cdr_created"
EVENT_COST_UPDATED = "billing_cost_updated"


class CostSensor(Entity):
    """`sensor.<charger>_<connector>_session_cost`: the running session's price (gross)."""

    domain = "sensor"

    def __init__(self, charger_id: str, connector: int, currency: str) -> None:
        super().__init__(
            f"billing-cost-{charger_id}-{connector}", f"{charger_id} {connector} session cost"
        )
        self.currency = currency
        self.value: str | None = None
        self.attrs: dict[str, Any] = {}

    @property
    def unit(self) -> str | None:
        return self.currency

    def native_state(self) -> Any:
        return self.value  # decimal text: money never travels as a float

    def state_attributes(self) -> Mapping[str, Any]:
        return self.attrs


class BillingEngine:
    def __init__(
        self, hub: Hub, conf: Mapping[str, Any], payments: Payments, webhooks: WebhookSender
    ) -> None:
        assert hub.recorder is not None
        self.hub, self.conf = hub, conf
        self.currency: str = conf.get("currency") or hub.currency
        plans = {n: PricePlan.from_config(n, c, self.currency) for n, c in conf["plans"].items()}
        self.book = PlanBook(plans, conf["assign"])
        self.sessions = SessionStore(hub.recorder)
        self.payments, self.webhooks = payments, webhooks
        self.since: datetime = hub.clock.now()
        self.sensors: dict[tuple[str, int], CostSensor] = {}
        self._who: dict[str, Who] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._timer: Timer | None = None
        self._stopped = False

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        now = self.hub.clock.now()
        assert self.hub.recorder is not None
        installed = await self.hub.recorder.write_fact(
            lambda conn: store.state_setdefault(conn, "installed_at", now.isoformat())
        )
        self.since = datetime.fromisoformat(installed)
        bus = self.hub.bus
        self._unsubscribe += [
            bus.listen(EVENT_SESSION_STARTED, self._on_started),
            bus.listen(EVENT_SESSION_STOPPED, self._on_stopped),
        ]
        self._schedule_estimates()
        self.hub.create_task(self.catch_up(), "billing catch-up")

    def stop(self) -> None:
        self._stopped = True
        for remove in self._unsubscribe:
            remove()
        if self._timer is not None:
            self._timer.cancel()

    async def catch_up(self) -> int:
        """Bill completed sessions that have no CDR (the hub stopped between a session's stop
        and its CDR, or was down): never one stopped before billing was installed."""
        horizon = self.hub.clock.now() - timedelta(days=self.conf["catch_up_days"])
        since = max(self.since, horizon)
        assert self.hub.recorder is not None
        ids = await self.hub.recorder.read(lambda conn: store.sessions_to_bill(conn, since))
        for session_id in ids:
            await self.bill_session(session_id)
        if ids:
            _LOGGER.info("billed %d sessions that had no CDR yet", len(ids))
        return len(ids)

    # --- who, where, which plan ---------------------------------------------------------
    async def who(self, id_tag: str | None) -> Who:
        """The account behind a token, from the accounts plugin (`accounts.lookup_token`);
        without it, or for a token it does not know, the session's account is unknown."""
        if not id_tag or not self.hub.services.has("accounts", "lookup_token"):
            return Who()
        try:
            answer = await self.hub.services.call("accounts", "lookup_token", {"id_token": id_tag})
        except Exception:
            pseudonym = pseudonymize(id_tag, pseudonym_key(self.hub))
            _LOGGER.exception("accounts.lookup_token failed for token %s", pseudonym)
            return Who()
        if not answer:
            return Who()
        return Who(
            account_id=_text(answer.get("account_id")),
            organisation_id=_text(answer.get("organisation_id")),
            group=_text(answer.get("group")),
            plan=_text(answer.get("plan")),
            name=_text(answer.get("name")),
        )

    def site_of(self, session: Session) -> str | None:
        entity_id = session.data.get("entity_id")
        state = self.hub.states.get(entity_id) if entity_id else None
        if state is not None and state.attributes.get("site"):
            return str(state.attributes["site"])
        if self.conf.get("site"):
            return str(self.conf["site"])
        return self.hub.site.id if self.hub.site is not None else None

    def plan_for(self, session: Session, who: Who) -> PricePlan:
        name = self.book.resolve(
            who, session.charger_id, session.data.get("entity_id"), self.site_of(session)
        )
        return self.book.get(name, self.currency)

    def token_of(self, session: Session) -> str | None:
        if not session.id_tag:
            return None
        return pseudonymize(session.id_tag, pseudonym_key(self.hub))

    # --- CDRs -----------------------------------------------------------------------------
    def _on_started(self, event: Event) -> None:
        tag = event.data.get("id_tag")
        if tag and str(tag).upper().startswith(ADHOC_PREFIX):
            self.hub.create_task(
                self.payments.attach_session(str(tag), event.data["session_id"]),
                "billing card session",
            )
        self.hub.create_task(
            self.webhooks.enqueue("session_started", self._public(event.data)), "billing webhook"
        )

    def _on_stopped(self, event: Event) -> None:
        data = self._public(event.data)
        self.hub.create_task(
            self._stopped_session(str(event.data["session_id"]), data), "billing session stopped"
        )

    async def _stopped_session(self, session_id: str, data: Mapping[str, Any]) -> None:
        await self.webhooks.enqueue("session_stopped", data)
        await self.bill_session(session_id)

    def _public(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A charger plugin's session event with the token replaced by its pseudonym."""
        out = {k: v for k, v in data.items() if k != "id_tag"}
        tag = data.get("id_tag")
        out["token"] = pseudonymize(tag, pseudonym_key(self.hub)) if tag else None
        return out

    async def bill_session(self, session_id: str) -> Cdr | None:
        """The session's CDR: created on its first call, the same record on every later one."""
        session = await self.sessions.get(session_id)
        if session is None or session.status is not SessionStatus.COMPLETED:
            return None
        readings = await self.sessions.readings(session_id)
        who = await self.who(session.id_tag)
        payment = await self.payments.adhoc(session.id_tag)
        cdr = build_cdr(
            session,
            readings,
            self.plan_for(session, who),
            who,
            self.token_of(session),
            self.site_of(session),
            self.hub.time_zone,
            self.hub.clock.now(),
        )
        if payment is not None:
            cdr = replace(
                cdr,
                doc={**cdr.doc, "payment": {"provider": payment["provider"], "id": payment["id"]}},
            )
        assert self.hub.recorder is not None
        stored, created = await self.hub.recorder.write_fact(lambda c: store.insert_cdr(c, cdr))
        self._who.pop(session_id, None)
        if not created:
            return stored
        for warning in stored.doc["energy"]["warnings"]:
            _LOGGER.warning("CDR %s (session %s): %s", stored.id[:8], session_id[:8], warning)
        await self._announce(stored)
        self._final(stored)
        if payment is not None:
            try:
                await self.payments.settle_session(stored, session.id_tag)
            except Exception:
                _LOGGER.exception("capturing the card payment of session %s failed", session_id)
        return stored

    async def _announce(self, cdr: Cdr) -> None:
        summary = cdr.summary()
        self.hub.bus.fire(EVENT_CDR_CREATED, summary)
        await self.webhooks.enqueue("cdr_created", summary)

    async def correct(self, cdr_id: str, reason: str, plan: str | None = None) -> list[Cdr]:
        """Credit a CDR and replace it by one priced again from the recorded readings (with
        the same plan, or `plan`): two new records referencing it, the original untouched."""
        assert self.hub.recorder is not None
        original = await self.hub.recorder.read(lambda conn: store.get_cdr(conn, cdr_id))
        if original is None:
            raise BillingError(f"no CDR {cdr_id!r}")
        if original.kind == CREDIT:
            raise BillingError("a credit CDR cannot be corrected; correct the record it credits")
        session = await self.sessions.get(original.session_id)
        if session is None:
            raise BillingError(f"the session of CDR {cdr_id} is gone")
        readings = await self.sessions.readings(session.id)
        if plan is not None and plan not in self.book.plans:
            raise BillingError(f"no plan {plan!r}")
        chosen = (
            self.book.get(plan, self.currency)
            if plan
            else PricePlan.from_snapshot(original.doc["plan"])
        )
        now = self.hub.clock.now()
        credit = credit_for(original, now, reason)
        who = replace(who_from(original.doc), plan=None)
        new = build_cdr(
            session,
            readings,
            chosen,
            who,
            original.token,
            original.site,
            self.hub.time_zone,
            now,
            kind=CORRECTION,
            replaces=original.id,
            reason=reason,
        )
        if "payment" in original.doc:
            new = replace(new, doc={**new.doc, "payment": original.doc["payment"]})
        await self.hub.recorder.write_fact(lambda c: store.insert_correction(c, credit, new))
        for record in (credit, new):
            await self._announce(record)
        if "payment" in original.doc:
            await self.payments.book_correction(original.doc["payment"]["id"], credit, new)
        return [credit, new]

    # --- live estimates -------------------------------------------------------------------
    async def estimate(self, session_id: str) -> dict[str, Any]:
        """The price of a session so far (running) or in full (finished), not yet a CDR."""
        session = await self.sessions.get(session_id)
        if session is None:
            raise BillingError(f"no session {session_id!r}")
        readings = await self.sessions.readings(session_id)
        who = self._who.get(session_id)
        if who is None:
            who = self._who[session_id] = await self.who(session.id_tag)
        plan = self.plan_for(session, who)
        running = session.status is SessionStatus.ACTIVE
        until = self.hub.clock.now() if running else None
        b, _ = price(session, readings, plan, self.hub.time_zone, until)
        return {
            "session_id": session.id,
            "charger_id": session.charger_id,
            "connector": session.connector,
            "transaction_id": session.transaction_id,
            "entity_id": session.data.get("entity_id"),
            "running": running,
            "plan": plan.name,
            "currency": b.currency,
            "energy_kwh": fmt(b.energy_wh / 1000),
            "net": fmt(b.net),
            "tax": fmt(b.tax),
            "total": fmt(b.gross),
            "lines": [
                {"kind": x.kind, "description": x.description, "amount": fmt(x.amount)}
                for x in b.lines
            ],
            "as_of": (until or session.stopped_at or session.started_at).isoformat(),
        }

    def _schedule_estimates(self) -> None:
        if not self._stopped:
            self._timer = self.hub.clock.call_later(self.conf["estimate_interval"], self._tick)

    def _tick(self) -> None:
        self._schedule_estimates()
        self.hub.create_task(self.update_estimates(), "billing estimates")

    async def update_estimates(self) -> None:
        """Refresh every running session's price: its sensor, and `billing_cost_updated`
        {charger_id, connector, transaction_id, session_id, total, currency}, which a charger
        plugin may forward (OCPP 2.0.1 CostUpdated)."""
        for session in await self.sessions.active():
            try:
                estimate = await self.estimate(session.id)
            except Exception:
                _LOGGER.exception("estimating session %s failed", session.id)
                continue
            await self._show(session.charger_id, session.connector, estimate, final=False)
            self.hub.bus.fire(
                EVENT_COST_UPDATED,
                {
                    k: estimate[k]
                    for k in (
                        "charger_id",
                        "connector",
                        "entity_id",
                        "transaction_id",
                        "session_id",
                        "total",
                        "currency",
                    )
                },
            )

    async def _show(
        self, charger: str, connector: int, estimate: Mapping[str, Any], final: bool
    ) -> None:
        sensor = self.sensors.get((charger, connector))
        if sensor is None:
            sensor = self.sensors[(charger, connector)] = CostSensor(
                charger, connector, estimate["currency"]
            )
            await self.hub.entities.add("billing", [sensor])
        sensor.currency, sensor.value = estimate["currency"], estimate["total"]
        sensor.attrs = {
            k: estimate.get(k)
            for k in ("session_id", "transaction_id", "net", "tax", "energy_kwh", "plan")
        }
        sensor.attrs["final"] = final
        sensor.write_state()

    def _final(self, cdr: Cdr) -> None:
        if (cdr.charger_id, cdr.connector) not in self.sensors:
            return
        estimate = {
            "currency": cdr.currency,
            "total": fmt(cdr.gross),
            "net": fmt(cdr.net),
            "tax": fmt(cdr.tax),
            "session_id": cdr.session_id,
            "plan": cdr.plan,
            "energy_kwh": fmt(cdr.energy_wh / 1000),
            "transaction_id": cdr.doc["session"]["transaction_id"],
        }
        self.hub.create_task(
            self._show(cdr.charger_id, cdr.connector, estimate, final=True), "billing final price"
        )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
