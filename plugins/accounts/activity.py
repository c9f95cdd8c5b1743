"""Where a token is charging: its recent sessions from the recorder, who counts as "elsewhere",
and which of its sessions on different chargers overlap in time (a cloned card's trace).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, or_, select

from hub.charging.session import SessionStatus
from hub.storage.schema import sessions

LOOKBACK = timedelta(days=3)  # sessions older than this cannot overlap one starting now
_CONNECTOR = re.compile(r"_\d+$")


@dataclass(frozen=True, slots=True)
class Seen:
    """One session of a token, as much as concurrency and clone checks need."""

    session_id: str
    station: str  # the charger plugin's charger id (one OCPP station: several connectors)
    entity: str | None
    started_at: datetime
    stopped_at: datetime | None
    accepted: bool  # refused sessions are recorded too, until the charger stops them

    @property
    def active(self) -> bool:
        return self.stopped_at is None

    def same_station(self, charger: str) -> bool:
        """Is `charger` (an entity id, or `charger.<station>` before a connector is known) on
        this session's station? Connector entities are `charger.<station>_<n>`."""
        if charger in (self.entity, f"charger.{self.station}"):
            return True
        own = f"charger.{self.station}"
        return charger.startswith(own + "_") and bool(_CONNECTOR.fullmatch(charger[len(own) :]))


def sessions_of(conn: Connection, token_id: str, since: datetime) -> list[Seen]:
    """The token's sessions still active or started after `since` (any spelling of its id)."""
    s = sessions.c
    query = select(s.id, s.charger_id, s.data, s.started_at, s.stopped_at, s.status).where(
        func.upper(func.trim(s.id_tag)) == token_id,
        or_(s.status == SessionStatus.ACTIVE.value, s.started_at >= since),
    )
    seen = []
    for row in conn.execute(query):
        data = row.data or {}
        stopped = row.stopped_at if row.status != SessionStatus.ACTIVE.value else None
        accepted = data.get("authorization") in (None, "Accepted")
        seen.append(
            Seen(row.id, row.charger_id, data.get("entity_id"), row.started_at, stopped, accepted)
        )
    return sorted(seen, key=lambda x: (x.started_at, x.session_id))


def stations_of(conn: Connection, tags: list[str]) -> list[str]:
    """Charger ids (stations) where any of these token ids (or erased markers) charged."""
    s = sessions.c
    query = select(s.charger_id).where(func.upper(func.trim(s.id_tag)).in_(tags)).distinct()
    return sorted(row.charger_id for row in conn.execute(query))


def busy_elsewhere(seen: list[Seen], charger: str) -> list[Seen]:
    """Accepted sessions in progress that are not the one `charger` is asking about.

    A token shown again where it charges (a 2.0.1 event of the same transaction, a card held up
    to stop) is not a second use; on another connector of the same station it is.
    """
    return [
        s
        for s in seen
        if s.active and s.accepted and s.entity != charger and charger != f"charger.{s.station}"
    ]


def overlapping(seen: list[Seen], session_id: str) -> list[tuple[Seen, Seen]]:
    """Pairs of `session_id` with sessions on other stations that ran at the same time.

    While `session_id` is in progress its end is unknown: only a session already running when it
    started counts (a late offline report of an earlier use is judged once it has stopped).
    """
    mine = [s for s in seen if s.session_id == session_id]
    pairs = []
    for a, b in itertools.product(mine, seen):
        if a.station == b.station or a.session_id == b.session_id:
            continue
        if a.active:
            together = b.started_at <= a.started_at < _end(b)
        else:
            together = a.started_at < _end(b) and b.started_at < _end(a)
        if together:
            pairs.append((a, b))
    return pairs


def _end(seen: Seen) -> datetime:
    return seen.stopped_at or datetime.max.replace(tzinfo=seen.started_at.tzinfo)
