"""The session half of a simulated charger: vehicles come and go, authorize, charge, leave.

A mixin of SimCharger: it changes connector state and calls the version's tx_*/status hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plugins.simulator.connector import Connector, Transaction
from plugins.simulator.link import Outgoing
from plugins.simulator.physics import Vehicle, draw, share
from plugins.simulator.profiles import ChargingProfile

if TYPE_CHECKING:
    from plugins.simulator.charger import SimCharger

    _Base = SimCharger
else:
    _Base = object


class Sessions(_Base):
    def fault(self, connector_id: int, error_code: str = "GroundFailure") -> None:
        conn = self.connector(connector_id)
        if conn.tx is not None:
            self.end_transaction(
                conn, "EmergencyStop" if error_code == "GroundFailure" else "Other"
            )
        conn.error_code = error_code
        self._refresh()

    def clear_fault(self, connector_id: int) -> None:
        self.connector(connector_id).error_code = None
        self._refresh()

    # --- vehicles -------------------------------------------------------------------------
    def connector(self, connector_id: int) -> Connector:
        return self.connectors[connector_id - 1]

    def _key(self, conn: Connector) -> str:
        return f"{self.id}/{conn.id}"

    def _schedule_arrival(self, conn: Connector, at: datetime) -> None:
        if conn.visit_timer is not None:
            conn.visit_timer.cancel()
        conn.visit_timer = self.clock.call_at(at, lambda: self._arrive(conn))

    def _arrive(self, conn: Connector) -> None:
        conn.visit_timer = None
        vehicle = self.ctx.planner.vehicle(self._key(conn), conn.visits, self.clock.now())
        conn.visits += 1
        if self.plug_in(conn.id, vehicle) is None and vehicle.departure is not None:
            # The bay is taken, out of order or faulted: this driver goes elsewhere.
            at = self.ctx.planner.next_arrival(self._key(conn), conn.visits, vehicle.departure)
            self._schedule_arrival(conn, at)

    def plug_in(self, connector_id: int, vehicle: Vehicle | None = None) -> Vehicle | None:
        """A vehicle arrives and plugs in; with an RFID tag it authorizes and starts charging."""
        conn = self.connector(connector_id)
        if conn.vehicle is not None or conn.error_code is not None or not conn.operative:
            return None
        if vehicle is None:
            vehicle = self.ctx.planner.vehicle(self._key(conn), conn.visits, self.clock.now())
            conn.visits += 1
        conn.vehicle, conn.finished = vehicle, False
        if vehicle.departure is not None:
            conn.depart_timer = self.clock.call_at(vehicle.departure, lambda: self.unplug(conn.id))
        self._refresh()
        if vehicle.id_tag:
            self._authorize(conn, vehicle.id_tag)
        return vehicle

    def unplug(self, connector_id: int) -> None:
        """The vehicle leaves: a running transaction stops (EVDisconnected), then Available."""
        conn = self.connector(connector_id)
        if conn.depart_timer is not None:
            conn.depart_timer.cancel()
            conn.depart_timer = None
        if conn.vehicle is None:
            return
        if conn.tx is not None:
            self.end_transaction(conn, "EVDisconnected")
        conn.vehicle, conn.finished = None, False
        self._refresh()
        if self.ctx.planner.arrivals.enabled and not self._stopping:
            at = self.ctx.planner.next_arrival(self._key(conn), conn.visits, self.clock.now())
            self._schedule_arrival(conn, at)

    # --- sessions -------------------------------------------------------------------------
    def _authorize(
        self, conn: Connector, id_tag: str, then: Callable[[bool], None] | None = None
    ) -> None:
        decide = then or (lambda ok: self._authorized(conn, id_tag, ok))
        known = (self.local_list.get(id_tag) if self.local_list_enabled else None) or (
            self.auth_cache.get(id_tag)
        )

        def offline() -> None:
            if known is None:
                decide(self.allow_offline_unknown)
            else:
                decide(self.local_authorize_offline and known == "Accepted")

        def answered(result: Any) -> None:
            status = self.authorize_status(result)
            self.auth_cache[id_tag] = status
            decide(status == "Accepted")

        if self.online and self.local_pre_authorize and known == "Accepted":
            decide(True)
            return
        self.outbox.put(Outgoing(lambda: self.authorize_payload(id_tag), answered, fail=offline))

    def _authorized(self, conn: Connector, id_tag: str, ok: bool) -> None:
        idle = conn.tx is None and conn.error_code is None and not conn.finished
        if ok and idle and conn.vehicle is not None:
            self._begin(conn, id_tag, trigger="Authorized")

    def _begin(
        self,
        conn: Connector,
        id_tag: str | None,
        *,
        trigger: str,
        remote_start_id: int | None = None,
        profile: ChargingProfile | None = None,
        id_type: str = "ISO14443",
    ) -> None:
        now = self.clock.now()
        conn.advance(now, self.voltages)
        self._tx_count += 1
        local_id = f"{self._tx_prefix}-{now:%y%m%d%H%M%S}-{self._tx_count}"
        tx = Transaction(
            local_id=local_id,
            id_tag=id_tag,
            started=now,
            meter_start=round(conn.energy_wh),
            remote_start_id=remote_start_id,
            ocpp_id=local_id if self.assigns_tx_ids else None,
            id_type=id_type,
        )
        conn.tx, conn.finished = tx, False
        if profile is not None:
            self.profiles.install(conn.id, profile)
        self.stats.tx_started += 1
        self._refresh(report=False)
        self.tx_started(conn, tx, trigger)
        self._refresh()
        if self._meter_timer is None:
            self._meter_timer = self.clock.call_later(self.meter_interval, self._meter_tick)

    def end_transaction(self, conn: Connector, reason: str) -> None:
        tx = conn.tx
        if tx is None:
            return
        now = self.clock.now()
        for other in self.connectors:
            other.advance(now, self.voltages)
        sample = conn.sample(now, self.voltages)
        tx.stopped, tx.meter_stop, tx.reason = now, sample.energy_wh, reason
        conn.tx, conn.finished = None, conn.vehicle is not None
        conn.stop_drawing()
        if conn.pending_inoperative:
            conn.operative, conn.pending_inoperative = False, False
        self.profiles.drop_tx_profiles(conn.id)
        self.stats.tx_stopped += 1
        self.tx_ended(conn, tx, sample, reason)
        self._refresh()

    def _refresh(self, *, report: bool = True) -> None:
        """Bring meters up to now, recompute every connector's draw, report status changes."""
        now = self.clock.now()
        for conn in self.connectors:
            conn.advance(now, self.voltages)
        active = [c for c in self.connectors if c.tx is not None and c.vehicle is not None]
        draws = [
            draw(
                c.vehicle,  # type: ignore[arg-type]
                max_current=self.spec.max_current,
                phases=self.spec.phases,
                limit=self.profiles.connector_limit(c.id, now, c.tx.started, c.tx.ocpp_id),  # type: ignore[union-attr]
                voltage=self.ctx.voltage,
            )
            for c in active
        ]
        for conn, result in zip(
            active, share(draws, self.profiles.station_limit(now), self.ctx.voltage), strict=True
        ):
            conn.apply(result)
        for conn in self.connectors:
            if conn not in active:
                conn.stop_drawing()
            new = conn.derived_status()
            if report and new is not conn.status:
                old, conn.status = conn.status, new
                self.status_changed(conn, old)

    def _meter_tick(self) -> None:
        self._meter_timer = None
        if self._stopping:
            return
        self._refresh()
        now = self.clock.now()
        for conn in self.connectors:
            if conn.tx is not None:
                self.tx_sample(conn, conn.tx, conn.sample(now, self.voltages))
        if any(c.tx is not None for c in self.connectors):
            self._meter_timer = self.clock.call_later(self.meter_interval, self._meter_tick)
