"""Test support for billing: plans from YAML-like dicts, sessions as the OCPP plugin records them,
and a hub with the billing plugin (and, when asked, a stand-in accounts plugin) on the SimClock.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from hub.bootstrap import create_hub
from hub.charging.session import REGISTER, MeterReading, Session, derive_energy
from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import PluginHost, hookimpl
from hub.services import ServiceCall
from hub.storage.sessions import SessionStore
from plugins import billing as billing_plugin
from plugins.billing.engine import EVENT_SESSION_STARTED, EVENT_SESSION_STOPPED
from plugins.billing.plans import PLAN_SCHEMA, PricePlan
from plugins.billing.pricing import Breakdown, price_session

TZ_NAME = "Europe/Berlin"


def plan(conf: Mapping[str, Any], name: str = "test", currency: str = "EUR") -> PricePlan:
    return PricePlan.from_config(name, PLAN_SCHEMA(dict(conf)), currency)


def session(
    start: datetime,
    stop: datetime | None,
    meter_start: float | None = 0,
    meter_stop: float | None = None,
    *,
    charger: str = "bay_01",
    connector: int = 1,
    id_tag: str | None = "04A1B2C3",
    transaction_id: str | None = None,
) -> Session:
    return Session(
        id=uuid.uuid4().hex,
        charger_id=charger,
        connector=connector,
        transaction_id=transaction_id or str(uuid.uuid4().int % 10**9),
        started_at=start,
        id_tag=id_tag,
        meter_start_wh=meter_start,
        stopped_at=stop,
        meter_stop_wh=meter_stop,
        data={"entity_id": f"charger.{charger}_{connector}"},
    )


def registers(
    s: Session, points: Sequence[tuple[datetime, float]], signed: Mapping[int, str] | None = None
) -> list[MeterReading]:
    signed = signed or {}
    return [
        MeterReading(
            s.charger_id, s.connector, t, REGISTER, float(v), "Wh", s.id, signed_data=signed.get(i)
        )
        for i, (t, v) in enumerate(points)
    ]


def priced(p: PricePlan, s: Session, readings: Sequence[MeterReading], tz: Any) -> Breakdown:
    energy = derive_energy(s, readings)
    return price_session(p, s.started_at, s.stopped_at or s.started_at, energy.intervals, tz)


# --- a hub with the billing plugin ---------------------------------------------------------------
class FakeAccounts:
    """What the accounts plugin offers billing: `accounts.lookup_token` and `get_account`."""

    def __init__(
        self,
        tokens: Mapping[str, Mapping[str, Any]],
        contacts: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.tokens = {k.upper(): dict(v) for k, v in tokens.items()}
        self.contacts = dict(contacts or {})
        self.calls: list[str] = []

    @hookimpl
    def hub_register_services(self, hub: Hub, register: Any) -> None:
        def lookup(call: ServiceCall) -> Any:
            self.calls.append(call.data["id_token"])
            return self.tokens.get(str(call.data["id_token"]).upper())

        def get_account(call: ServiceCall) -> Any:
            return self.contacts.get(call.data["id"])

        register("accounts", "lookup_token", lookup)
        register("accounts", "get_account", get_account)


def write_config(config_dir: Path, billing: Mapping[str, Any], **extra: Any) -> None:
    config = {
        "hub": {"name": "billing test", "time_zone": TZ_NAME, "currency": "EUR"},
        "billing": json.loads(json.dumps(billing, default=str)),
        **extra,
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@contextlib.asynccontextmanager
async def billing_hub(
    config_dir: Path,
    clock: SimClock,
    billing: Mapping[str, Any],
    *,
    plugins: Mapping[str, Any] | None = None,
    db_url: str | None = None,
    **extra: Any,
) -> AsyncIterator[Hub]:
    if db_url is not None:
        extra["recorder"] = {"db_url": db_url}
    write_config(config_dir, billing, **extra)
    host = PluginHost()
    host.register("billing", billing_plugin)
    for name, plugin in (plugins or {}).items():
        host.register(name, plugin)
    hub = create_hub(config_dir, clock=clock, host=host)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def record_session(
    hub: Hub,
    start: datetime,
    points: Sequence[tuple[float, float]],
    *,
    stop_after: float | None = None,
    meter_start: float | None = None,
    meter_stop: float | None = None,
    charger: str = "bay_01",
    connector: int = 1,
    id_tag: str | None = "04A1B2C3",
    signed: Mapping[int, str] | None = None,
    fire: bool = True,
) -> Session:
    """A session as the OCPP plugin records it: start, register readings (minutes after the
    start, Wh), stop; each a durable fact, then the bus events a charger plugin fires."""
    assert hub.recorder is not None
    store = SessionStore(hub.recorder)
    first = points[0][1] if points else 0.0
    last = points[-1][1] if points else 0.0
    s = session(
        start,
        None,
        first if meter_start is None else meter_start,
        None,
        charger=charger,
        connector=connector,
        id_tag=id_tag,
    )
    stored, _ = await store.start_session(s)
    data = {
        "session_id": stored.id,
        "charger_id": charger,
        "connector": connector,
        "transaction_id": stored.transaction_id,
        "entity_id": s.data["entity_id"],
        "id_tag": id_tag,
    }
    if fire:
        hub.bus.fire(EVENT_SESSION_STARTED, data)
    readings = registers(stored, [(start + timedelta(minutes=m), wh) for m, wh in points], signed)
    await store.add_readings(readings)
    minutes = stop_after if stop_after is not None else (points[-1][0] if points else 0)
    stopped = await store.stop_session(
        stored.id,
        start + timedelta(minutes=minutes),
        last if meter_stop is None else meter_stop,
        "Local",
    )
    if fire:
        energy = derive_energy(stopped, await store.readings(stopped.id))
        hub.bus.fire(EVENT_SESSION_STOPPED, {**data, "energy_wh": energy.energy_wh})
        await hub.block_till_done()
    return stopped
