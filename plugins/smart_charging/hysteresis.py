"""The allocator's command-side rules: when a new limit is worth sending, whether a charger follows
its limit, and whether a vehicle draws less than it was given.

Pure functions of numbers the caller measures on the hub clock. `allocator.allocate` ends with
`round_down` and `apply_hysteresis` (which uses `hold`); the smart_charging plugin uses
`complies` and `draws_less` to fill `SessionDemand` (`complying`, and `under_draw_s`: how long
`draws_less` has been true without a break).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plugins.smart_charging.allocator import _Limit, _Session

DEFAULT_HYSTERESIS_A = 1.0
# A command is resent only when it moves by more than the hysteresis: chargers store their
# charging profile in flash, and a limit that dithers by 0.1 A every few seconds wears it out.

COMPLIANCE_TOLERANCE_A = 1.0
# Meters read a little high, and vehicles round their PWM reading: 1 A above the command is noise.
COMPLIANCE_GRACE_S = 15.0
# IEC 61851-1 gives a vehicle 5 s to follow a PWM change, and a charger takes a few seconds to
# apply a profile it received: until then a higher draw is not disobedience.

UNDER_DRAW_AFTER_S = 60.0
# A vehicle ramps up over tens of seconds after a pause or a new limit; only a lasting shortfall
# (a full battery tapering, a weak on-board charger) lends its capacity to others.
RAMP_MARGIN_A = 2.0
# What an under-drawing vehicle is held at above its draw: room to show that it wants more.
UNDER_DRAW_THRESHOLD_A = 1.0
# Drawing more than this below the command counts as drawing less. It is below the ramp margin on
# purpose: a held vehicle that keeps drawing what it drew stays held (no flapping every minute),
# one that uses its margin is no longer under-drawing and gets its full share on the next round.


def peak(measured_a: Sequence[float] | None, phases: int = 3) -> float:
    """The highest draw over the phases a session uses (charger phases L1.. first)."""
    if not measured_a:
        return 0.0
    return max(0.0, *(float(a) for a in measured_a[: max(1, phases)]))


def needs_send(new_a: float, last_a: float | None, hysteresis_a: float) -> bool:
    """True when `new_a` must reach the charger: never sent, a pause or a resume, or a big move."""
    if last_a is None:
        return True
    if (new_a <= 0) != (last_a <= 0):
        return True  # crossing between paused and charging is never swallowed
    return abs(new_a - last_a) > hysteresis_a + 1e-9


def complies(
    measured_a: Sequence[float] | None,
    commanded_a: float | None,
    since_command_s: float,
    *,
    phases: int = 3,
    tolerance_a: float = COMPLIANCE_TOLERANCE_A,
    grace_s: float = COMPLIANCE_GRACE_S,
) -> bool:
    """Whether a charger keeps to its last command; unknown (nothing sent or measured) is yes.

    The caller marks a session `complying=False` while this is False, and the allocator then counts
    the charger at its maximum until it complies again.
    """
    if commanded_a is None or measured_a is None or since_command_s < grace_s:
        return True
    return peak(measured_a, phases) <= max(commanded_a, 0.0) + tolerance_a


def draws_less(
    measured_a: Sequence[float] | None,
    commanded_a: float | None,
    *,
    phases: int = 3,
    threshold_a: float = UNDER_DRAW_THRESHOLD_A,
) -> bool:
    """Whether a vehicle now draws clearly less than it was given (the caller times how long)."""
    if commanded_a is None or measured_a is None or commanded_a <= 0:
        return False
    return peak(measured_a, phases) < commanded_a - threshold_a


@dataclass(frozen=True, slots=True)
class Command:
    """One session's new limit, as the hysteresis sees it."""

    new_a: float
    last_a: float | None  # the limit in force on the charger; None: never told
    min_a: float  # the session's range now: a last value outside it is always replaced
    max_a: float
    budgets: Sequence[tuple[int, float]]  # (index into `room`, phase-amps it uses per amp)


def hold(
    commands: Sequence[Command], room: list[float], hysteresis_a: float
) -> list[tuple[float, bool]]:
    """The limit in force and whether to send it, per command; `room` is updated in place.

    `room` is what each budget (a node's amps on a phase, or its kW) has left after every
    `new_a`. A command within the hysteresis keeps its last value when that is still in range;
    keeping a lower value only frees room, keeping a higher one must fit in what is left, and
    those are tried in the given order (deterministic). Pauses and resumes are always sent.
    """
    out = [(c.new_a, needs_send(c.new_a, c.last_a, hysteresis_a)) for c in commands]
    higher: list[int] = []
    for n, c in enumerate(commands):
        last = c.last_a
        if out[n][1] or last is None or last == c.new_a:
            continue
        if not c.min_a - 1e-9 <= last <= c.max_a + 1e-9:
            out[n] = (c.new_a, True)  # out of range now: a new vehicle max, a new plan
        elif last < c.new_a:
            out[n] = _keep(c, last, room)
        else:
            higher.append(n)
    for n in higher:
        c, last = commands[n], commands[n].last_a
        assert last is not None
        if all(room[i] >= (last - c.new_a) * w - 1e-9 for i, w in c.budgets):
            out[n] = _keep(c, last, room)
        else:
            out[n] = (c.new_a, True)
    return out


def _keep(c: Command, last: float, room: list[float]) -> tuple[float, bool]:
    for i, w in c.budgets:
        room[i] -= (last - c.new_a) * w
    return last, False


# --- the allocator's last steps, on its own session records ------------------------------------
PLAN_STEP_A = 0.1  # a session at its plan follows it to this step (hysteresis: the rest)


def round_down(sessions: list[_Session], resolution_a: float) -> None:
    """Round down to what a charger accepts; down never breaks a limit, and never below the min."""
    if resolution_a <= 0:
        return
    per_amp = 1 / resolution_a
    exact = abs(per_amp - round(per_amp)) < 1e-9  # 0.1 A: divide by 10, so 7.3 stays 7.3
    for s in sessions:
        if s.demand.complying and s.current > 0:
            # The allowance keeps 15.999999999999996 at 16 instead of 15.9; it adds < 1e-9 A.
            steps = math.floor(s.current * per_amp + 1e-9)
            value = steps / round(per_amp) if exact else steps * resolution_a
            s.current = max(s.min_a, value)


def apply_hysteresis(sessions: list[_Session], limits: list[_Limit], h: float) -> None:
    """Keep last commands that are close enough (see `hysteresis.hold`) and say so.

    Not for a session that gets all its plan asks: the plan moves once a slot, not every few
    seconds, and a charger held up to a hysteresis below it falls behind the plan for good
    (measured on the fleet week: 15 A kept for 15.5 A planned, cars short at departure and then
    raised to full power at once). It follows its plan to PLAN_STEP_A, keeping only a lower
    last command (which never needs room)."""
    room = [lim.initial for lim in limits]  # after fixed load and every rounded current
    steered = []
    for s in sessions:
        if not s.demand.complying:
            continue
        for i, w in s.limits:
            room[i] -= s.current * w
        last = s.demand.last_command_a
        if s.planned and s.current >= s.cap_a - PLAN_STEP_A - 1e-9:
            if last is not None and 0 < last <= s.current <= last + PLAN_STEP_A + 1e-9:
                for i, w in s.limits:
                    room[i] += (s.current - last) * w
                s.current, s.send = last, False
            else:
                s.send = needs_send(s.current, last, 0.0)
        else:
            steered.append(s)
    commands = [
        Command(s.current, s.demand.last_command_a, s.min_a, s.cap_a, s.limits) for s in steered
    ]
    for s, (value, send) in zip(steered, hold(commands, room, h), strict=True):
        if value != s.current:
            s.why += f"; kept at {value:g} A (within the {h:g} A hysteresis of {s.current:g} A)"
        s.current, s.send = value, send
