"""The back office: monthly invoice runs, credit notes, rendered and archived documents, e-mail,
exports and the reconciliation report, on top of the engine's CDRs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from hub.storage.schema import sessions
from plugins.billing import exports, invoices, reconcile, store
from plugins.billing.cdr import recompute, same_price
from plugins.billing.invoices import CREDIT_NOTE, Draft, Numbering, Period
from plugins.billing.mailer import MailSettings, send
from plugins.billing.money import fmt
from plugins.billing.render import Renderer
from plugins.billing.store import AlreadyInvoiced, BillingError

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub
    from plugins.billing.engine import BillingEngine

_LOGGER = logging.getLogger(__name__)

EVENT_INVOICE_ISSUED = "billing_invoice_issued"
EVENT_RAW_EXPORT = "billing_raw_ids_exported"
RUN_HOUR = 2  # local time of the automatic monthly run


class Office:
    def __init__(self, hub: Hub, conf: Mapping[str, Any], engine: BillingEngine) -> None:
        self.hub, self.conf, self.engine = hub, conf, engine
        inv = conf["invoices"]
        self.numbering = Numbering(
            inv["prefix"], inv["credit_note_prefix"], inv["yearly_series"], inv["digits"]
        )
        folder = conf.get("templates")
        if folder and hub.config_dir is not None and not Path(folder).is_absolute():
            folder = str(hub.config_dir / folder)
        self.renderer = Renderer(Path(folder) if folder else None)
        self.mail = MailSettings.from_config(conf["email"]) if conf.get("email") else None
        rc = conf["reconciliation"]
        self.thresholds = reconcile.Thresholds(
            rc["threshold_percent"], rc["threshold_kwh"] * 1000, rc["site_threshold_percent"]
        )
        self._timer: Timer | None = None

    @property
    def tz(self) -> Any:
        return self.hub.time_zone

    async def _write(self, fn: Callable[[Connection], Any]) -> Any:
        assert self.hub.recorder is not None
        return await self.hub.recorder.write_fact(fn)

    async def _read(self, fn: Callable[[Connection], Any]) -> Any:
        assert self.hub.recorder is not None
        return await self.hub.recorder.read(fn)

    # --- the monthly run ------------------------------------------------------------------
    def schedule(self) -> None:
        after = self.conf["invoices"]["auto_issue_after_days"]
        if after is None:
            return
        local = self.hub.now_local()
        run = self._run_time(local.year, local.month, after)
        if run <= local:
            # Past this month's run (a restart, or the hub was down): run now; it is a no-op
            # for every party already invoiced for last month.
            self.hub.create_task(self._scheduled(), "billing invoice run")
            nxt = local.replace(day=1) + timedelta(days=32)
            run = self._run_time(nxt.year, nxt.month, after)
        self._timer = self.hub.clock.call_at(run.astimezone(UTC), self._on_timer)

    def _run_time(self, year: int, month: int, after: int) -> datetime:
        first = datetime(year, month, 1, tzinfo=self.tz)
        return datetime.combine(
            (first + timedelta(days=after)).date(), time(RUN_HOUR), tzinfo=self.tz
        )

    def _on_timer(self) -> None:
        self.schedule()
        self.hub.create_task(self._scheduled(), "billing invoice run")

    async def _scheduled(self) -> None:
        try:
            await self.run(Period.previous_month(self.hub.clock.now(), self.tz))
        except Exception:
            _LOGGER.exception("the monthly invoice run failed")

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    async def run(self, period: Period, bill_to: str | None = None) -> list[dict[str, Any]]:
        """Issue the period's invoices: one per party and currency with CDRs not invoiced yet
        (late ones from earlier months included) or a subscription; each once per period."""
        parties: list[tuple[str, str]] = await self._read(
            lambda conn: store.parties_to_invoice(conn, period.end)
        )
        subs = self.conf["subscriptions"]
        for party, plan in subs.items():
            currency = self.conf["plans"][plan].get("currency") or self.engine.currency
            if (party, currency) not in parties:
                parties.append((party, currency))
        issued = []
        for party, currency in sorted(parties):
            if bill_to is not None and party != bill_to:
                continue
            row = await self.issue_one(party, currency, period)
            if row is not None:
                issued.append(row)
        return issued

    async def issue_one(self, party: str, currency: str, period: Period) -> dict[str, Any] | None:
        plan_name = self.conf["subscriptions"].get(party)
        subs = (self.engine.book.get(plan_name, currency),) if plan_name else ()
        draft = Draft(party, currency, period, await self.customer(party), subs)
        now = self.hub.clock.now()

        def issue(conn: Connection) -> dict[str, Any] | None:
            return invoices.issue(
                conn,
                draft,
                numbering=self.numbering,
                issuer=self.conf["issuer"],
                tz=self.tz,
                now=now,
                terms_days=self.conf["invoices"]["payment_terms_days"],
            )

        try:
            row = await self._write(issue)
        except AlreadyInvoiced:
            return None  # another hub on this database issued it a moment ago
        if row is None:
            return None
        _LOGGER.info("invoice %s for %s: %s %s", row["number"], party, fmt(row["gross"]), currency)
        await self._issued(row, "invoice_issued")
        if self.conf["invoices"]["email"] and self.mail is not None:
            try:
                await self.email(row["id"])
            except Exception:
                _LOGGER.exception("e-mailing invoice %s failed", row["number"])
        return row

    async def _issued(self, row: Mapping[str, Any], event: str) -> None:
        summary = {
            "invoice_id": row["id"],
            "number": row["number"],
            "kind": row["kind"],
            "bill_to": row["bill_to"],
            "currency": row["currency"],
            "net": fmt(row["net"]),
            "tax": fmt(row["tax"]),
            "gross": fmt(row["gross"]),
            "credit_of": row.get("credit_of"),
        }
        self.hub.bus.fire(EVENT_INVOICE_ISSUED, summary)
        await self.engine.webhooks.enqueue(event, summary)
        try:
            await self.files(row["id"], "pdf")
            await self.files(row["id"], "html")
        except Exception:
            _LOGGER.exception("rendering %s failed; it is rendered again when asked", row["number"])

    async def customer(self, party: str) -> dict[str, Any]:
        """Name, e-mail and address of whom an invoice is for: `billing.customers`, then what
        the accounts plugin knows of an account (`accounts.get_account` {id})."""
        found: dict[str, Any] = dict(self.conf["customers"].get(party, {}))
        if self.hub.services.has("accounts", "get_account"):
            try:
                answer = await self.hub.services.call("accounts", "get_account", {"id": party})
            except Exception:
                _LOGGER.exception("accounts.get_account failed for %s", party)
            else:
                found.update(
                    {
                        k: v
                        for k, v in dict(answer or {}).items()
                        if k in ("name", "email", "address") and v and k not in found
                    }
                )
        return found

    async def credit_note(
        self, invoice_key: str, reason: str, lines: Sequence[Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        now = self.hub.clock.now()
        row = await self._write(
            lambda conn: invoices.issue_credit_note(
                conn, invoice_key, reason, lines, numbering=self.numbering, tz=self.tz, now=now
            )
        )
        await self._issued(row, "credit_note_issued")
        return row

    # --- documents ------------------------------------------------------------------------
    async def files(self, invoice_key: str, fmt_: str) -> bytes:
        """The archived HTML or PDF of an invoice; rendered and archived on first use."""
        row = await self._read(lambda conn: store.get_invoice(conn, invoice_key))
        if row is None:
            raise BillingError(f"no invoice {invoice_key!r}")
        content = await self._read(lambda conn: store.get_file(conn, row["id"], fmt_))
        if content is not None:
            return bytes(content)
        if fmt_ == "html":
            content = self.renderer.html(row["doc"]).encode()
        else:
            content = await asyncio.get_running_loop().run_in_executor(
                None, self.renderer.pdf, row["doc"]
            )
        await self._write(lambda conn: store.put_file(conn, row["id"], fmt_, content))
        archived = await self._read(lambda conn: store.get_file(conn, row["id"], fmt_))
        return bytes(archived)

    async def email(self, invoice_key: str, to: str | None = None) -> dict[str, Any]:
        if self.mail is None:
            raise BillingError("no e-mail settings (billing.email) are configured")
        row = await self._read(lambda conn: store.get_invoice(conn, invoice_key))
        if row is None:
            raise BillingError(f"no invoice {invoice_key!r}")
        doc = row["doc"]
        to = to or doc["customer"].get("email")
        if not to:
            raise BillingError(f"no e-mail address for {row['bill_to']}")
        title = "Credit note" if row["kind"] == CREDIT_NOTE else "Invoice"
        issuer = doc["issuer"].get("name", "")
        subject = f"{title} {row['number']} from {issuer}".strip()
        text = (
            f"{title} {row['number']} for {doc['period']['label']}: "
            f"{fmt(row['gross'])} {row['currency']}.\nThe PDF is attached.\n"
        )
        pdf = await self.files(row["id"], "pdf")
        html = (await self.files(row["id"], "html")).decode()
        how = await send(
            self.hub,
            self.mail,
            to,
            subject,
            text,
            html,
            [(f"{row['number']}.pdf", "application/pdf", pdf)],
        )
        _LOGGER.info("%s %s e-mailed by %s", title.lower(), row["number"], how)
        return {"number": row["number"], "sent_by": how}

    # --- exports --------------------------------------------------------------------------
    async def export_cdrs(
        self,
        start: datetime | None,
        end: datetime | None,
        fmt_: str,
        raw_ids: bool,
        user: str | None = None,
    ) -> str:
        def read(conn: Connection) -> tuple[list[Any], dict[str, str] | None, dict[str, str]]:
            cdrs = store.list_cdrs(conn, start, end)
            raw = _raw_tokens(conn, {c.session_id for c in cdrs}) if raw_ids else None
            numbers = {}
            for c in cdrs:
                inv = store.invoice_of_cdr(conn, c.id)
                if inv is not None:
                    numbers[c.id] = store.get_invoice(conn, inv)["number"]
            return cdrs, raw, numbers

        cdrs, raw, numbers = await self._read(read)
        if raw_ids:
            self.hub.bus.fire(EVENT_RAW_EXPORT, {"user_id": user, "records": len(cdrs)})
            _LOGGER.warning("CDRs exported with raw token ids (user %s)", user or "?")
        if fmt_ == "ocpi":
            return exports.dumps(
                [exports.ocpi_cdr(c, self.conf["ocpi"], raw, numbers.get(c.id)) for c in cdrs]
            )
        records = [exports.cdr_record(c, raw, numbers.get(c.id)) for c in cdrs]
        return exports.cdrs_csv(records) if fmt_ == "csv" else exports.dumps(records)

    async def export_invoices(self, start: datetime | None, end: datetime | None, fmt_: str) -> str:
        rows = await self._read(lambda conn: store.list_invoices(conn, start, end))
        if fmt_ == "csv":
            return exports.invoices_csv(rows)
        return exports.dumps([{**exports.invoice_record(r), "document": r["doc"]} for r in rows])

    async def reconciliation(
        self, start: datetime, end: datetime, recompute_cdrs: bool = True
    ) -> dict[str, Any]:
        site_meter = self.conf["reconciliation"].get("site_meter")

        def read(conn: Connection) -> tuple[Any, Any, Any]:
            cdrs = store.list_cdrs(conn, start, end)
            points = reconcile.register_points(conn, start, end)
            site = reconcile.site_meter_delta(conn, site_meter, start, end) if site_meter else None
            return cdrs, points, site

        cdrs, points, site_wh = await self._read(read)
        checked: dict[str, bool] | None = None
        if recompute_cdrs:
            checked = {}
            for cdr in cdrs:
                if cdr.kind == "credit":
                    continue
                session = await self.engine.sessions.get(cdr.session_id)
                readings = await self.engine.sessions.readings(cdr.session_id)
                checked[cdr.id] = session is not None and same_price(
                    recompute(cdr, session, readings), cdr.breakdown
                )
        result = reconcile.report(
            cdrs,
            points,
            self.thresholds,
            site_meter=site_meter,
            site_wh=site_wh,
            recomputed=checked,
        )
        result.update(start=start.isoformat(), end=end.isoformat())
        return result


def _raw_tokens(conn: Connection, session_ids: set[str]) -> dict[str, str]:
    if not session_ids:
        return {}
    query = select(sessions.c.id, sessions.c.id_tag).where(sessions.c.id.in_(session_ids))
    return {sid: tag for sid, tag in conn.execute(query) if tag}


def month_period(value: str | None, now: datetime, tz: Any) -> Period:
    """ "2026-03" -> that month in local time; None -> the month before `now`."""
    if not value:
        return Period.previous_month(now, tz)
    year, month = (int(x) for x in value.split("-", 1))
    return Period.month(year, month, tz)
