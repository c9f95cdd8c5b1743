"""Why a plan leaves a vehicle short, in words a facility manager reads: the window, the time at
its maximum power, or the limit or cap that was full while it waited (optimizer.make_plan).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from plugins.smart_charging.optimizer import (
    SHORT_KWH,
    Block,
    PlanProblem,
    Prepared,
    Shortfall,
    _where,
)


def explain(prep: Prepared, v: int, missing: float, binding: Mapping[int, list[int]]) -> Shortfall:
    pb, need, a, d = prep.problem, prep.problem.vehicles[v], prep.first[v], prep.last[v]
    clock = "%H:%M" if pb.slots * pb.slot <= timedelta(days=1) else "%a %H:%M"
    if d <= a:
        if need.departure <= need.arrival:
            text = f"departs ({need.departure:{clock}}) before it arrives ({need.arrival:{clock}})"
        elif need.departure <= pb.start or need.arrival >= pb.end:
            text = "not plugged in during the plan"
        else:
            text = "plugged in for less than one whole slot"
        return Shortfall(need.id, round(missing, 3), text, "window")
    reasons: list[tuple[str, str]] = []
    alone = prep.ub[v] * prep.dt * (d - a)
    if prep.need[v] - alone > SHORT_KWH:
        late = need.departure > pb.end
        by = "the plan's end" if late else "departure"
        text = f"departs before enough time at max power: {alone:.1f} kWh possible at "
        text += f"{prep.ub[v]:g} kW ({prep.ub_why[v]}) by {by} at {_at(pb, d):{clock}}"
        reasons.append(("horizon" if late else "time", text))
    if missing > max(0.0, prep.need[v] - alone) + SHORT_KWH:  # the rest is lost to other limits
        tight: dict[tuple[str, tuple[int, ...]], list[Block]] = {}  # a node's phases: one reason
        for b, slots in sorted(binding.items()):
            tight.setdefault((prep.blocks[b].node.id, tuple(slots)), []).append(prep.blocks[b])
        for (_, slots), blocks in sorted(tight.items(), key=lambda item: -len(item[0][1]))[:2]:
            blk = blocks[0]
            caps = [c for t in slots if blk.caps and (c := blk.caps[t]) is not None]
            rating = math.inf if blk.rating is None else blk.rating
            if caps and min(caps) < rating:
                kind, text = "cap", f"{_where(blk.node, what='cap')} {min(caps):g} kW"
            elif blk.kind == "kW":
                kind, text = "limit", f"{_where(blk.node)} {rating:g} kW"
            else:  # a phase: in the amps the site is rated in
                amps = rating * 1000 / pb.site.voltage
                phases = "/".join(x.kind for x in blocks if x.kind != "kW")
                kind, text = "limit", f"{_where(blk.node, phases)} {amps:g} A"
            if blk.node.parent is None and (most := max(prep.base[t] for t in slots)) > 0:
                text += f" with base load up to {most:.1f} kW"
            reasons.append((kind, f"{text} in {_windows(pb, slots, clock)}"))
        if not binding:
            reasons.append(("cost", "its unmet-energy penalty is below what charging it costs"))
    text = "; ".join(r for _, r in reasons)
    return Shortfall(need.id, round(missing, 3), text, reasons[0][0])


def _at(pb: PlanProblem, t: int) -> datetime:
    return pb.start + t * pb.slot


def _windows(pb: PlanProblem, slots: Sequence[int], clock: str) -> str:
    have = set(slots)  # runs of consecutive slots: from each that follows none, to the first gap
    starts = [t for t in sorted(have) if t - 1 not in have]
    runs = [(a, next(u for u in itertools.count(a) if u not in have)) for a in starts]
    text = ", ".join(f"{_at(pb, a):{clock}}-{_at(pb, b):{clock}}" for a, b in runs[:3])
    return text + (", ..." if len(runs) > 3 else "")
