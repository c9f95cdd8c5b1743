"""AC cars the plan gives less than their minimum current take turns at it, a quarter at a time,
instead of all being raised to it: the plan's total kept, not a fleet's worth of minimums.

The LP relaxes minimums (it is linear); a charger cannot draw 2 A. Raising every such car to 6 A
put 24 vans at 99 kW where the plan wanted 60 (what `evhub plan` measured: 44 % dearer). Turns
never add up to more than the plan gave those cars, save for a car that cannot wait: a quarter
over it would be the period's new peak, paid for and then filled. Each car keeps what the plan
owes it, so the turns go round; the engine re-plans hourly what rounding left undelivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from plugins.smart_charging.planning import CEILING_MARGIN, SLOT, slot_start

if TYPE_CHECKING:
    from plugins.smart_charging.engine import Engine

EPS = 1e-6
URGENT_H = 0.25  # laxity at or below a quarter hour: it charges now, at full power, or misses
_SLOT_H = SLOT / timedelta(hours=1)


def take_turns(
    planned: Mapping[str, float],
    limits: Mapping[str, tuple[float, float]],
    laxity: Mapping[str, float],
    owed: Mapping[str, float],
) -> dict[str, float]:
    """kW per session for one quarter.

    `planned` is the plan's kW now, `limits` the least and most kW each can draw (least 0 for
    DC), `laxity` the hours each could still wait (time to departure minus time to fill at the
    plan's pace), `owed` the kWh its plans gave it while it waited. A car that cannot wait gets
    what it needs to catch up, at least its minimum; the others planned below their minimum take
    turns at it, the most owed first, while the planned kW of all of them still holds another
    one; what that leaves of their planned kW goes to the cars charging, least slack first.
    """
    out: dict[str, float] = {}
    waiting: list[str] = []
    budget = 0.0
    for session, kw in planned.items():
        low, high = limits.get(session, (0.0, kw))
        # What it needs now to keep the plan's pace from a quarter on. A plan that fills a car
        # at its ceiling in its last slot leaves it a quarter of slack by design: only a car
        # behind that is raised, and only as far as it needs (full power for every car near
        # its end at once was a peak nobody planned: +25 kW on the fleet week).
        floor = high * (1 - laxity.get(session, 1.0) / URGENT_H)
        if floor > EPS:  # it cannot wait its turn: what it needs, at least its minimum
            out[session] = min(high, max(floor, kw, low))
        elif kw <= EPS:
            out[session] = 0.0
        elif kw >= low - EPS:
            out[session] = kw
        else:
            waiting.append(session)
            budget += kw
    for session in sorted(waiting, key=lambda s: (-owed.get(s, 0.0), s)):
        low = limits[session][0]
        if budget >= low - EPS:
            out[session] = low
            budget -= low
        else:
            out[session] = 0.0
    # What the turns left of the plan's total goes to cars already charging, the least slack
    # first: dropped, it is energy the plan counted on, and the cars it was for fall behind.
    for session in sorted(out, key=lambda s: (laxity.get(s, 1.0), s)):
        if budget <= EPS:
            break
        if out[session] > 0:
            more = min(budget, limits.get(session, (0.0, out[session]))[1] - out[session])
            if more > EPS:
                out[session] += more
                budget -= more
    return out


class Turns:
    """The engine's turns: decided once a quarter, again when the plan or the sessions change
    within it; what each waiting car is owed is counted once a quarter."""

    def __init__(self) -> None:
        self.targets: dict[str, float] = {}
        self.minimum: dict[str, float] = {}
        self.owed: dict[str, float] = {}
        self._key: tuple[Any, ...] | None = None

    def decide(self, engine: Engine, now: datetime) -> None:
        quarter = slot_start(now)
        key = (quarter, engine.planner.version, frozenset(engine.sessions))
        if key == self._key:
            return
        new_quarter = self._key is None or self._key[0] != quarter
        planned, limits, laxity = {}, {}, {}
        volts = engine.site.voltage / 1000
        for t in engine.sessions.values():
            kw, _ = engine.planner.target(t.entity_id, now)
            if t.paused or kw is None:
                continue
            node = engine.nodes[t.entity_id]
            left, max_kw = engine.need(t)
            planned[t.entity_id] = kw
            low = 0.0 if node.dc else node.min_current * node.phases * volts
            limits[t.entity_id] = (low, max_kw)
            hours = (engine.departure(t) - now) / timedelta(hours=1)
            # Judged at the ceiling the plan used: a car falls behind as soon as it is behind
            # the plan's pace, while the margin above it is still there to catch up with.
            paced = max_kw * (1 - CEILING_MARGIN)
            laxity[t.entity_id] = hours - left / paced if paced > 0 else hours
        self.owed = {s: v for s, v in self.owed.items() if s in planned}
        if new_quarter:
            for s, kw in planned.items():
                if 0 < kw < limits[s][0]:
                    self.owed[s] = self.owed.get(s, 0.0) + kw * _SLOT_H
        self.targets = take_turns(planned, limits, laxity, self.owed)
        self.minimum = {s: low for s, (low, _) in limits.items()}
        if new_quarter:
            for s, kw in self.targets.items():
                if s in self.owed and kw > 0:
                    self.owed[s] -= kw * _SLOT_H
        self._key = key
