"""Transactions and meter values, shared by OCPP 1.6 and 2.0.1: durable before acknowledged.

Every start, stop and transaction reading is committed (SessionStore.write_fact) before the
handler returns, so the CALLRESULT never promises what a crash could lose.
"""

from __future__ import annotations

import logging
import math
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, update

from hub.charging.session import MeterReading, Session, SessionStatus, derive_energy
from hub.storage.schema import sessions
from plugins.ocpp.rpc import Err, OcppCallError

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.storage.sessions import SessionStore
    from plugins.ocpp.station import OcppConnector

_LOGGER = logging.getLogger(__name__)

EVENT_SESSION_STARTED = "session_started"
EVENT_SESSION_STOPPED = "session_stopped"

REGISTER = "Energy.Active.Import.Register"
_MULTIPLIED = {"kWh": ("Wh", 1000.0), "kW": ("W", 1000.0), "kvarh": ("varh", 1000.0)}


def is_billing_reading(reading: MeterReading) -> bool:
    """Energy registers and anything signed are facts a bill rests on and get their own rows;
    power, current, voltage and SoC are telemetry and live in the charger entity's history."""
    return reading.measurand.startswith("Energy.") or reading.signed_data is not None


def parse_timestamp(value: str) -> datetime:
    """RFC 3339 as chargers send it; a timestamp without offset is taken as UTC (a common bug)."""
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise OcppCallError(Err.PROPERTY, f"timestamp {value[:40]!r} is not a date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def new_transaction_id() -> int:
    """OCPP 1.6 ids are integers: a random positive int32, so ids cannot be guessed or walked."""
    return secrets.randbelow(2**31 - 2) + 1


def parse_meter_values(
    charger_id: str,
    connector: int,
    meter_values: Iterable[Mapping[str, Any]],
    session_id: str | None,
    *,
    default_context: str | None = None,
) -> list[MeterReading]:
    """OCPP meterValue[] (1.6 string values or 2.0.1 numbers with unitOfMeasure) -> readings.

    Signed values (1.6 format SignedData, 2.0.1 signedMeterValue) stay verbatim with the reading
    they sign. Unparsable numbers are skipped with a warning, never guessed.
    """
    readings: list[MeterReading] = []
    for mv in meter_values:
        ts = parse_timestamp(mv["timestamp"])
        signed: dict[tuple[str, str | None], str] = {}
        plain: list[Mapping[str, Any]] = []
        for sv in mv.get("sampledValue", ()):
            measurand = sv.get("measurand", REGISTER)
            if sv.get("format") == "SignedData":
                signed[(measurand, sv.get("phase"))] = str(sv["value"])
            else:
                plain.append(sv)
        for sv in plain:
            measurand = sv.get("measurand", REGISTER)
            try:
                value = float(sv["value"])
            except (TypeError, ValueError):
                _LOGGER.warning("%s: unreadable %s value %r", charger_id, measurand, sv["value"])
                continue
            if not math.isfinite(value):
                continue
            unit, value = _unit(sv, value, measurand)
            blob = sv.get("signedMeterValue")
            signed_data = (
                blob.get("signedMeterData")
                if isinstance(blob, Mapping)
                else signed.pop((measurand, sv.get("phase")), None)
            )
            readings.append(
                MeterReading(
                    charger_id=charger_id,
                    connector=connector,
                    timestamp=ts,
                    measurand=measurand,
                    value=value,
                    unit=unit,
                    session_id=session_id,
                    phase=sv.get("phase"),
                    location=sv.get("location"),
                    context=sv.get("context", default_context),
                    signed_data=signed_data,
                )
            )
        for (measurand, phase), blob in signed.items():  # signed data with no plain twin
            readings.append(
                MeterReading(charger_id, connector, ts, measurand, 0.0, "Signed",
                             session_id, phase, None, None, blob)
            )  # fmt: skip
    return readings


def _unit(sv: Mapping[str, Any], value: float, measurand: str) -> tuple[str, float]:
    uom = sv.get("unitOfMeasure")
    if isinstance(uom, Mapping):  # 2.0.1: unit plus a power-of-ten multiplier
        unit = uom.get("unit", "Wh" if measurand.startswith("Energy") else "")
        value *= 10 ** int(uom.get("multiplier", 0))
    else:
        unit = sv.get("unit") or ("Wh" if measurand.startswith("Energy") else "")
    if unit in _MULTIPLIED:
        unit, factor = _MULTIPLIED[unit]
        value *= factor
    return unit, value


def apply_readings(entity: OcppConnector, readings: Sequence[MeterReading]) -> None:
    """Show the newest sample of each measurand on the connector's entity."""
    data = entity.data
    currents: dict[str, float] = {}
    voltages: dict[str, float] = {}
    for r in sorted(readings, key=lambda r: r.timestamp):
        if r.unit == "Signed" or (r.location == "EV" and r.measurand != "SoC"):
            continue
        m, phase = r.measurand, (r.phase or "")[:2]
        if m == REGISTER and not phase:
            data.energy_wh = r.value
        elif m == "Power.Active.Import" and not phase:
            data.power_w = r.value
        elif m == "Current.Import" and phase:
            currents[phase] = r.value
        elif m == "Voltage" and phase:
            voltages[phase] = r.value
        elif m == "SoC":
            data.soc = r.value
        elif m == "Temperature":
            data.temperature = r.value
    if currents:
        data.current_a = tuple(currents.get(p) for p in ("L1", "L2", "L3"))
        data.phases = sum(1 for v in currents.values() if v > 0.5) or data.phases
    if voltages:
        data.voltage_v = tuple(voltages.get(p) for p in ("L1", "L2", "L3"))
    if data.power_w is None and currents and voltages:
        data.power_w = sum((currents.get(p) or 0) * (voltages.get(p) or 0) for p in currents)


class Transactions:
    """Starts, readings and stops of one hub, over the recorder's SessionStore."""

    def __init__(self, hub: Hub, store: SessionStore) -> None:
        self._hub = hub
        self.store = store
        # Active sessions by (charger, transaction id): MeterValues must not cost a database read.
        self._active: dict[tuple[str, str], Session] = {}

    async def load_active(self) -> None:
        for session in await self.store.active():
            self._active[(session.charger_id, session.transaction_id)] = session

    def known(self, charger_id: str, transaction_id: str) -> bool:
        return (charger_id, transaction_id) in self._active

    def active_on(self, charger_id: str, connector: int) -> Session | None:
        found = [
            s
            for (cp, _), s in self._active.items()
            if cp == charger_id and s.connector == connector
        ]
        return max(found, key=lambda s: s.started_at) if found else None

    async def find(self, charger_id: str, transaction_id: str) -> Session | None:
        session = self._active.get((charger_id, transaction_id))
        if session is None:
            session = await self.store.find(charger_id, transaction_id)
        return session

    async def start(
        self,
        charger_id: str,
        connector: int,
        *,
        transaction_id: str,
        started_at: datetime,
        id_tag: str | None,
        id_tag_type: str | None,
        meter_start_wh: float | None,
        idempotency_key: str,
        data: Mapping[str, Any] | None = None,
    ) -> tuple[Session, bool]:
        session = Session(
            id=uuid.uuid4().hex,
            charger_id=charger_id,
            connector=connector,
            transaction_id=transaction_id,
            started_at=started_at,
            id_tag=id_tag,
            id_tag_type=id_tag_type,
            meter_start_wh=meter_start_wh,
            idempotency_key=idempotency_key,
            data=dict(data or {}),
        )
        stored, created = await self.store.start_session(session)
        if stored.status is SessionStatus.ACTIVE:
            self._active[(stored.charger_id, stored.transaction_id)] = stored
        if created:
            _LOGGER.info(
                "session %s started on %s connector %s", stored.id[:8], charger_id, connector
            )
            self._hub.bus.fire(EVENT_SESSION_STARTED, _event(stored))
        return stored, created

    async def record(self, readings: Sequence[MeterReading]) -> None:
        """Commit a session's energy readings before the charger is answered."""
        facts = [r for r in readings if is_billing_reading(r)]
        if facts:
            await self.store.add_readings(facts)

    def record_later(self, readings: Sequence[MeterReading]) -> None:
        """Energy readings outside a session (reconciliation against site meters), batched."""
        self.store.queue_readings([r for r in readings if is_billing_reading(r)])

    async def stop(
        self,
        session: Session,
        *,
        stopped_at: datetime,
        meter_stop_wh: float | None,
        reason: str | None,
    ) -> Session:
        if session.status is SessionStatus.COMPLETED:
            return session  # a retried stop: same answer, nothing written twice
        stopped = await self.store.stop_session(session.id, stopped_at, meter_stop_wh, reason)
        self._active.pop((stopped.charger_id, stopped.transaction_id), None)
        energy = derive_energy(stopped, await self.store.readings(stopped.id))
        for warning in energy.warnings:
            _LOGGER.warning("session %s on %s: %s", stopped.id, stopped.charger_id, warning)
        _LOGGER.info(
            "session %s stopped on %s connector %s: %.3f kWh (%s)", stopped.id[:8],
            stopped.charger_id, stopped.connector, energy.energy_wh / 1000, reason or "no reason",
        )  # fmt: skip
        self._hub.bus.fire(
            EVENT_SESSION_STOPPED,
            {**_event(stopped), "energy_wh": energy.energy_wh, "energy_method": energy.method},
        )
        return stopped

    async def set_id_token(
        self, session: Session, id_tag: str | None, id_tag_type: str | None, data: Mapping[str, Any]
    ) -> Session:
        """The token presented after the start (2.0.1 starts at plug-in, the card comes later),
        committed before it is acknowledged. The first token is the one billed: never replaced.
        """
        if session.id_tag is not None or id_tag is None:
            return session
        merged = {**session.data, **data}

        def fact(conn: Connection) -> None:
            conn.execute(
                update(sessions)
                .where(sessions.c.id == session.id, sessions.c.id_tag.is_(None))
                .values(id_tag=id_tag, id_tag_type=id_tag_type, data=merged)
            )

        assert self._hub.recorder is not None  # the plugin refuses to start without one
        await self._hub.recorder.write_fact(fact)
        updated = replace(session, id_tag=id_tag, id_tag_type=id_tag_type, data=merged)
        key = (session.charger_id, session.transaction_id)
        if key in self._active:
            self._active[key] = updated
        return updated


def _event(session: Session) -> dict[str, Any]:
    return {
        "session_id": session.id,
        "charger_id": session.charger_id,
        "connector": session.connector,
        "transaction_id": session.transaction_id,
        "entity_id": session.data.get("entity_id"),
        "id_tag": session.id_tag,
    }
