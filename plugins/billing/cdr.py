"""Charge detail records: a finished session priced from its raw readings, sealed and immutable.

A CDR keeps the plan it was priced with and a digest of the readings, so it can be recomputed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hub.charging.session import MeterReading, Session, derive_energy
from plugins.billing.money import dec, fmt
from plugins.billing.plans import PricePlan, Who
from plugins.billing.pricing import Breakdown, price_session

CDR = "cdr"  # a session's first record
CREDIT = "credit"  # cancels an earlier record (negative amounts), OCPI's credit CDR
CORRECTION = "correction"  # replaces a credited record


@dataclass(frozen=True, slots=True)
class Cdr:
    """One row of billing_cdrs; `doc` holds everything else (never changed once written)."""

    id: str
    kind: str
    session_id: str
    charger_id: str
    connector: int
    started_at: datetime
    stopped_at: datetime
    currency: str
    energy_wh: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal
    plan: str
    created_at: datetime
    doc: Mapping[str, Any] = field(default_factory=dict)
    origin_session_id: str | None = None
    credit_of: str | None = None
    replaces: str | None = None
    bill_to: str | None = None
    account_id: str | None = None
    token: str | None = None
    site: str | None = None

    @property
    def breakdown(self) -> Breakdown:
        return Breakdown.from_dict(self.doc["price"])

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Cdr:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def summary(self) -> dict[str, Any]:
        """What events and webhooks carry: no raw token, amounts as decimal text."""
        return {
            "cdr_id": self.id,
            "kind": self.kind,
            "session_id": self.session_id,
            "charger_id": self.charger_id,
            "connector": self.connector,
            "site": self.site,
            "bill_to": self.bill_to,
            "account_id": self.account_id,
            "token": self.token,
            "started_at": self.started_at.isoformat(),
            "stopped_at": self.stopped_at.isoformat(),
            "energy_kwh": fmt(self.energy_wh / 1000),
            "currency": self.currency,
            "net": fmt(self.net),
            "tax": fmt(self.tax),
            "gross": fmt(self.gross),
            "plan": self.plan,
            "credit_of": self.credit_of,
            "replaces": self.replaces,
        }


def readings_digest(readings: Sequence[MeterReading]) -> str:
    """SHA-256 over the readings in a canonical order and form: the CDR's input, fingerprinted."""
    rows = sorted(
        (
            r.timestamp.isoformat(),
            r.measurand,
            r.phase or "",
            r.location or "",
            repr(float(r.value)),
            r.unit,
            r.context or "",
            r.signed_data or "",
        )
        for r in readings
    )
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def signed_values(readings: Sequence[MeterReading]) -> list[dict[str, Any]]:
    """Signed meter values (OCMF or a vendor's format) exactly as the charger sent them."""
    found = []
    for r in sorted(readings, key=lambda r: r.timestamp):
        if not r.signed_data:
            continue
        found.append(
            {
                "timestamp": r.timestamp.isoformat(),
                "measurand": r.measurand,
                "context": r.context,
                "value": r.value,
                "unit": r.unit,
                "encoding": "OCMF" if r.signed_data.startswith("OCMF|") else "unknown",
                "signed_data": r.signed_data,
            }
        )
    return found


def session_end(session: Session, readings: Sequence[MeterReading]) -> datetime:
    if session.stopped_at is not None:
        return session.stopped_at
    times = [r.timestamp for r in readings]
    return max([session.started_at, *times])


def price(
    session: Session,
    readings: Sequence[MeterReading],
    plan: PricePlan,
    tz: ZoneInfo,
    until: datetime | None = None,
) -> tuple[Breakdown, Any]:
    """(price, EnergyResult) of a session from its raw readings; `until` for a running one."""
    energy = derive_energy(session, readings)
    end = until if until is not None else session_end(session, readings)
    return price_session(plan, session.started_at, end, energy.intervals, tz), energy


def build_cdr(
    session: Session,
    readings: Sequence[MeterReading],
    plan: PricePlan,
    who: Who,
    token: str | None,
    site: str | None,
    tz: ZoneInfo,
    now: datetime,
    *,
    kind: str = CDR,
    replaces: str | None = None,
    reason: str | None = None,
) -> Cdr:
    breakdown, energy = price(session, readings, plan, tz)
    doc = {
        "version": 1,
        "session": {
            "id": session.id,
            "transaction_id": session.transaction_id,
            "charger_id": session.charger_id,
            "connector": session.connector,
            "entity_id": session.data.get("entity_id"),
            "started_at": session.started_at.isoformat(),
            "stopped_at": session_end(session, readings).isoformat(),
            "meter_start_wh": session.meter_start_wh,
            "meter_stop_wh": session.meter_stop_wh,
            "stop_reason": session.stop_reason,
            "offline": bool(session.data.get("offline")),
        },
        "who": {
            "account_id": who.account_id,
            "organisation_id": who.organisation_id,
            "group": who.group,
            "token": token,
            "token_type": session.id_tag_type,
        },
        "site": site,
        "energy": {
            "wh": fmt(breakdown.energy_wh),
            "method": str(energy.method),
            "warnings": list(energy.warnings),
        },
        "readings": {"count": len(readings), "digest": readings_digest(readings)},
        "plan": plan.snapshot(),
        "time_zone": tz.key,
        "price": breakdown.as_dict(),
        "signed_meter_values": signed_values(readings),
        "reason": reason,
    }
    return Cdr(
        id=uuid.uuid4().hex,
        kind=kind,
        session_id=session.id,
        origin_session_id=session.id if kind == CDR else None,
        replaces=replaces,
        charger_id=session.charger_id,
        connector=session.connector,
        started_at=session.started_at,
        stopped_at=session_end(session, readings),
        currency=breakdown.currency,
        energy_wh=breakdown.energy_wh,
        net=breakdown.net,
        tax=breakdown.tax,
        gross=breakdown.gross,
        plan=plan.name,
        created_at=now,
        doc=doc,
        bill_to=who.bill_to,
        account_id=who.account_id,
        token=token,
        site=site,
    )


def credit_for(original: Cdr, now: datetime, reason: str) -> Cdr:
    """The credit CDR of `original`: all its data, every amount negated (OCPI 2.2.1 10.2.1)."""
    negated = original.breakdown.negated()
    doc = {
        **original.doc,
        "price": negated.as_dict(),
        "reason": reason,
        "energy": {**original.doc["energy"], "wh": fmt(negated.energy_wh)},
    }
    return Cdr(
        id=f"{original.id}-C",
        kind=CREDIT,
        session_id=original.session_id,
        charger_id=original.charger_id,
        connector=original.connector,
        started_at=original.started_at,
        stopped_at=original.stopped_at,
        currency=original.currency,
        energy_wh=-original.energy_wh,
        net=-original.net,
        tax=-original.tax,
        gross=-original.gross,
        plan=original.plan,
        created_at=now,
        doc=doc,
        credit_of=original.id,
        bill_to=original.bill_to,
        account_id=original.account_id,
        token=original.token,
        site=original.site,
    )


def recompute(cdr: Cdr, session: Session, readings: Sequence[MeterReading]) -> Breakdown:
    """Price the CDR's session again from the recorded readings, with the CDR's own plan."""
    plan = PricePlan.from_snapshot(cdr.doc["plan"])
    return price(session, readings, plan, ZoneInfo(cdr.doc["time_zone"]))[0]


def same_price(a: Breakdown, b: Breakdown) -> bool:
    return a.as_dict() == b.as_dict()


def who_from(doc: Mapping[str, Any]) -> Who:
    w = doc.get("who", {})
    return Who(w.get("account_id"), w.get("organisation_id"), w.get("group"))


def energy_kwh(cdr: Cdr) -> Decimal:
    return dec(cdr.energy_wh) / 1000
