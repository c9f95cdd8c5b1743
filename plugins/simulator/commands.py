"""What the CSMS asks of a simulated charger, protocol-neutral: the version handlers call these.

A mixin of SimCharger; the effects that send messages run after the reply (`after_reply`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plugins.simulator.connector import Connector
from plugins.simulator.profiles import CP_MAX, TX, ChargingProfile

if TYPE_CHECKING:
    from plugins.simulator.charger import SimCharger

    _Base = SimCharger
else:
    _Base = object

MAX_STACK_LEVEL = 10


class Commands(_Base):
    def pick_connector(self, connector_id: int | None) -> Connector | None:
        if connector_id:
            found = (
                [self.connector(connector_id)] if 0 < connector_id <= len(self.connectors) else []
            )
        else:  # a vehicle already waiting first
            found = sorted(self.connectors, key=lambda c: c.vehicle is None)
        for conn in found:
            if conn.tx is None and conn.operative and conn.error_code is None and not conn.finished:
                return conn
        return None

    def remote_start(
        self,
        conn: Connector,
        id_tag: str,
        remote_start_id: int | None,
        profile: Any,
        id_type: str = "Central",
    ) -> None:
        """After the accepted answer: plug in a vehicle if none waits, authorize if configured."""
        if conn.vehicle is None:
            vehicle = self.ctx.planner.vehicle(
                self._key(conn), conn.visits, self.clock.now(), tagged=False
            )
            conn.visits += 1
            self.plug_in(conn.id, vehicle)
        parsed = ChargingProfile.from_ocpp(profile, self.clock.now()) if profile else None

        def begin(ok: bool = True) -> None:
            if ok and conn.tx is None and conn.vehicle is not None:
                self._begin(
                    conn, id_tag, trigger="RemoteStart", remote_start_id=remote_start_id,
                    profile=parsed, id_type=id_type,
                )  # fmt: skip

        if self.authorize_remote:
            self._authorize(conn, id_tag, then=begin)
        else:
            begin()

    def find_transaction(self, transaction_id: Any) -> Connector | None:
        for conn in self.connectors:
            if conn.tx is not None and str(conn.tx.ocpp_id) == str(transaction_id):
                return conn
        return None

    def set_profile(self, connector_id: int, data: Mapping[str, Any]) -> str:
        if not 0 <= connector_id <= len(self.connectors):
            return "Rejected"
        try:
            profile = ChargingProfile.from_ocpp(data, self.clock.now())
        except (KeyError, ValueError, TypeError, IndexError):
            return "Rejected"
        if (
            not profile.periods
            or profile.stack_level > MAX_STACK_LEVEL
            or profile.unit not in ("A", "W")
        ):
            return "Rejected"
        if profile.purpose == CP_MAX and connector_id != 0:
            return "Rejected"
        if profile.purpose == TX:
            tx = self.connector(connector_id).tx if connector_id else None
            if tx is None or (
                profile.transaction_id is not None
                and tx.ocpp_id is not None
                and str(profile.transaction_id) != str(tx.ocpp_id)
            ):
                return "Rejected"
        self.profiles.install(connector_id, profile)
        self.after_reply(self._refresh)
        return "Accepted"

    def clear_profiles(self, **criteria: Any) -> bool:
        removed = self.profiles.clear(**criteria)
        self.after_reply(self._refresh)
        return removed > 0

    def composite(
        self, connector_id: int, duration: float, unit: str
    ) -> tuple[datetime, list[tuple[float, float]]]:
        now = self.clock.now()
        tx = self.connector(connector_id).tx if connector_id else None
        periods = self.profiles.composite(
            connector_id, now, duration, unit=unit, tx_start=tx.started if tx else None,
            tx_id=tx.ocpp_id if tx else None, max_current=self.spec.max_current,
            phases=self.spec.phases, voltage=self.ctx.voltage,
        )  # fmt: skip
        return now, periods

    def change_availability(self, connector_id: int, operative: bool) -> str:
        if not 0 <= connector_id <= len(self.connectors):
            return "Rejected"
        targets = self.connectors if connector_id == 0 else [self.connector(connector_id)]
        scheduled = False
        for conn in targets:
            if not operative and conn.tx is not None:
                conn.pending_inoperative, scheduled = True, True
            else:
                conn.operative, conn.pending_inoperative = operative, False
        self.after_reply(self._refresh)
        return "Scheduled" if scheduled else "Accepted"

    def unlock(self, conn: Connector) -> None:
        if conn.tx is not None:
            self.end_transaction(conn, "UnlockCommand")
        self.unplug(conn.id)

    def reboot(self, reason: str) -> None:
        """Reset: stop transactions, send what is queued, drop the line, boot again."""
        for conn in self.connectors:
            self.end_transaction(conn, reason)
            conn.finished = False  # after the reboot a plugged-in vehicle authorizes again
        self._boot_reason = "RemoteReset"

        def down() -> None:
            self.outbox.on_empty = None
            self.disconnect(self.ctx.reboot_seconds)

        if self.online and self.outbox.queue:
            self.outbox.on_empty = down
        else:
            down()

    def update_local_list(self, version: int, full: bool, entries: Mapping[str, str | None]) -> str:
        if not full and version <= self.local_list_version:
            return "VersionMismatch"
        if full:
            self.local_list = {}
        for tag, status in entries.items():
            if status is None:
                self.local_list.pop(tag, None)
            else:
                self.local_list[tag] = status
        self.local_list_version = version
        return "Accepted"
