"""OCPP 2.0.1 TransactionEvent: sessions started, read and stopped durably before the answer,
with retries recognised by content (transactionId + seqNo) and seqNo gaps flagged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hub.charging.auth import AuthorizationResult, AuthorizationStatus, IdToken
from hub.charging.session import MeterReading, Session
from plugins.ocpp.transactions import apply_readings, parse_meter_values, parse_timestamp
from plugins.ocpp.v201_model import (
    MAX_SEEN,
    TxState,
    id_token_info,
    reading_key,
    register_wh,
    state_of,
)

if TYPE_CHECKING:
    from plugins.ocpp.v201 import V201

_LOGGER = logging.getLogger(__name__)

EVENT_SEQNO_GAP = "ocpp_seqno_gap"
EVENT_START_MISSING = "ocpp_transaction_start_missing"
MAX_GAP_REPORTED = 256  # seqNos listed in one gap event; a wild jump must not flood the bus


class TransactionEvents:
    """The TransactionEvent handler of one station's 2.0.1 adapter.

    A retried event gets the answer the first one got and writes nothing. An event for a
    transaction never seen (its Started was lost) starts the session instead of being refused,
    so no charged energy goes unrecorded. Offline-queued events keep their own timestamps.
    """

    def __init__(self, adapter: V201) -> None:
        self.adapter = adapter
        self.station = adapter.station
        self.hub = adapter.hub
        self.transactions = adapter.server.transactions

    async def handle(self, p: dict[str, Any]) -> dict[str, Any]:
        info, seq = p["transactionInfo"], p["seqNo"]
        tx_id: str = info["transactionId"]
        book = state_of(self.station)
        tx = book.tx(tx_id)
        if tx is not None and seq in tx.seen:
            return await self._repeat(tx, seq, p)
        restored = False
        if tx is None and (tx := await self._restore(tx_id)) is not None:
            restored = True
            book.keep(tx_id, tx)
        token = p.get("idToken")
        evse = (p.get("evse") or {}).get("id") or (tx.session.connector if tx else None)
        result = None
        if token is not None:
            result = await self.adapter.check_token(
                token, evse, info.get("remoteStartId"), tx.session if tx else None
            )
        readings = parse_meter_values(self.station.id, evse or 0, p.get("meterValue", ()), None)
        if tx is None:
            tx = TxState(await self._start(p, evse, token, result, readings))
            book.keep(tx_id, tx)
        elif token is not None and result is not None and tx.session.id_tag is None:
            tx.session = await self.transactions.set_id_token(
                tx.session, IdToken(token["idToken"], token["type"]).id or None, token["type"],
                _authorization(result),
            )  # fmt: skip
        await self._record(tx, readings)
        if p["eventType"] == "Ended":
            tx.session = await self.transactions.stop(
                tx.session,
                stopped_at=parse_timestamp(p["timestamp"]),
                meter_stop_wh=register_wh(readings, "Transaction.End", last=True),
                reason=info.get("stoppedReason", "Local"),  # may only be omitted when Local
            )
            if tx.missing:
                _LOGGER.warning(
                    "%s: transaction %s ended with seqNos %s never received",
                    self.station.id, tx_id, sorted(tx.missing)[:20],
                )  # fmt: skip
        # Seen only once every write has committed: an event whose write failed is retried.
        self._track(tx, seq, p, restored)
        if not p.get("offline"):
            # A replayed offline event is history: it must not overwrite what the entity shows.
            await self._show(tx, p, result, readings)
        answer = {"idTokenInfo": id_token_info(result)} if result is not None else {}
        tx.remember(seq, answer)
        return answer

    async def _repeat(self, tx: TxState, seq: int, p: Mapping[str, Any]) -> dict[str, Any]:
        """A retry (same transactionId and seqNo): the same answer, nothing written again."""
        _LOGGER.debug("%s: TransactionEvent %s/%s again", self.station.id, tx.session.id, seq)
        answer = tx.answers.get(seq)
        if answer is not None:
            return answer
        token = p.get("idToken")
        if token is None:
            return {}
        result = await self.adapter.check_token(token, tx.session.connector, None, tx.session)
        return {"idTokenInfo": id_token_info(result)}

    async def _restore(self, tx_id: str) -> TxState | None:
        """The state of a transaction recorded before this station state existed (a hub restart,
        or one forgotten): a retry must not add the readings already stored, and seqNos before
        now are unknown, not missing. None when the transaction was never recorded."""
        session = await self.transactions.find(self.station.id, tx_id)
        if session is None:
            return None
        stored = await self.transactions.store.readings(session.id)
        return TxState(session, recorded={reading_key(r) for r in stored})

    async def _start(
        self,
        p: Mapping[str, Any],
        evse: int | None,
        token: Mapping[str, Any] | None,
        result: AuthorizationResult | None,
        readings: list[MeterReading],
    ) -> Session:
        """Start the session of a transaction never recorded, from whichever event came first."""
        st, info = self.station, p["transactionInfo"]
        tx_id = info["transactionId"]
        if evse is None:
            evse = next(iter(st.connectors), 0) if len(st.connectors) == 1 else 0
            _LOGGER.warning("%s: transaction %s names no EVSE; using %s", st.id, tx_id, evse)
        entity = await st.connector(evse) if evse > 0 else None
        started = parse_timestamp(p["timestamp"])
        lost_start = p["eventType"] != "Started"
        if lost_start:
            # The Started event is lost: the earliest moment this event vouches for.
            started = min([started, *(r.timestamp for r in readings)])
            _LOGGER.warning("%s: %s event for unknown transaction %s; recorded from it",
                            st.id, p["eventType"], tx_id)  # fmt: skip
            self.hub.bus.fire(
                EVENT_START_MISSING,
                {"charger_id": st.id, "transaction_id": tx_id, "event_type": p["eventType"]},
            )
        id_token = IdToken(token["idToken"], token["type"]) if token else None
        session, _ = await self.transactions.start(
            st.id,
            evse,
            transaction_id=tx_id,
            started_at=started,
            id_tag=(id_token.id or None) if id_token else None,
            id_tag_type=id_token.type if id_token else None,
            meter_start_wh=None if lost_start else register_wh(
                readings, "Transaction.Begin", last=False
            ),
            idempotency_key=f"{st.id}|{tx_id}",
            data={
                "entity_id": entity.entity_id if entity else None,
                "evse_connector": (p.get("evse") or {}).get("connectorId"),
                "remote_start_id": info.get("remoteStartId"),
                "reservation_id": p.get("reservationId"),
                "trigger_reason": p["triggerReason"],
                "offline": bool(p.get("offline")),
                "start_event_missing": lost_start,
                **(_authorization(result) if result else {"authorization": None}),
            },
        )  # fmt: skip
        return session

    def _track(self, tx: TxState, seq: int, p: Mapping[str, Any], restored: bool) -> None:
        """Remember the seqNo; a jump past the next expected one is a gap (fired and logged).

        A seqNo that fills an earlier gap (offline messages arrive late) is simply accepted. A
        Started event sets the baseline, so stations that count per station are not flagged.
        """
        tx.seen.add(seq)
        if len(tx.seen) > MAX_SEEN:
            tx.seen.discard(min(tx.seen))
        tx.missing.discard(seq)
        last, gap = tx.last_seq, range(0)
        if last is None:
            if not restored and p["eventType"] != "Started" and seq > 0:
                gap = range(0, seq)
        elif seq > last + 1:
            gap = range(last + 1, seq)
        if last is None or seq > last:
            tx.last_seq = seq
        missing = [n for n in gap[:MAX_GAP_REPORTED] if n not in tx.seen]
        if not missing:
            return
        tx.missing.update(missing)
        tx_id = p["transactionInfo"]["transactionId"]
        _LOGGER.warning(
            "%s: transaction %s seqNo %s after %s: %d message(s) missing",
            self.station.id, tx_id, seq, last, len(gap),
        )  # fmt: skip
        self.hub.bus.fire(
            EVENT_SEQNO_GAP,
            {"charger_id": self.station.id, "transaction_id": tx_id, "session_id": tx.session.id,
             "received": seq, "last": last, "missing": missing, "offline": bool(p.get("offline"))},
        )  # fmt: skip

    async def _record(self, tx: TxState, readings: list[MeterReading]) -> None:
        """The event's readings, as the session's billing facts: committed before the answer."""
        session = tx.session
        rows = [r._replace(connector=session.connector, session_id=session.id) for r in readings]
        if tx.recorded is not None:
            rows = [r for r in rows if reading_key(r) not in tx.recorded]
        await self.transactions.record(rows)
        if tx.recorded is not None:  # only once committed: a failed write is retried in full
            tx.recorded.update(reading_key(r) for r in rows)

    async def _show(
        self,
        tx: TxState,
        p: Mapping[str, Any],
        result: AuthorizationResult | None,
        readings: list[MeterReading],
    ) -> None:
        """Live state of the EVSE entity: session, token, charging state and readings."""
        number = tx.session.connector
        if number <= 0 or (tx.session.stopped_at is not None and p["eventType"] != "Ended"):
            return  # a late event of a finished transaction: history, like an offline one
        entity = await self.station.connector(number)
        evse, data = state_of(self.station).evse(number), entity.data
        if p["eventType"] == "Ended":
            evse.charging_state, evse.finished = None, True
            if data.session_id == tx.session.id:
                data.session_id = data.id_tag = None
        else:
            state = p["transactionInfo"].get("chargingState")
            if state is not None:
                evse.charging_state, evse.finished = state, False
            data.session_id = tx.session.id
            if result is not None and result.status is AuthorizationStatus.ACCEPTED:
                data.id_tag = tx.session.id_tag
        if p.get("numberOfPhasesUsed"):
            data.phases = p["numberOfPhasesUsed"]
        apply_readings(entity, readings)
        data.status = evse.status() or data.status
        entity.write_state()


def _authorization(result: AuthorizationResult) -> dict[str, Any]:
    """What the session keeps of its authorization (a remote start is honoured all through)."""
    return {"authorization": str(result.status), "authorization_source": result.source}
