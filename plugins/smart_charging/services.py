"""`charging.*` services (site, node and charger limits, goals, priorities, pause, emergency stop)
and `smart_charging.replan`: how users and automations steer the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import voluptuous as vol

from hub.services import ServiceCall
from hub.validators import aware_datetime as _aware
from plugins.smart_charging.allocator import Cap

if TYPE_CHECKING:
    from plugins.smart_charging.engine import Engine, Tracked

_ENTITY = vol.Match(r"^charger\.[a-z0-9_]+$")
_KW = vol.Any(None, vol.All(vol.Coerce(float), vol.Range(min=0)))
_AMPS = _KW
_LIMIT_KW = vol.Required("limit_kw")


def register_services(engine: Engine, register: Callable[..., None]) -> None:
    def changed() -> None:
        engine.request_round()
        engine.planner.request(engine.inputs())

    def session(call: ServiceCall) -> Tracked:
        entity_id = call.data["entity_id"]
        if entity_id not in engine.nodes:
            raise LookupError(f"{entity_id} is not a charger of the site tree")
        tracked = engine.sessions.get(entity_id)
        if tracked is None:
            raise LookupError(f"{entity_id} has no session now")
        return tracked

    def set_site_limit(call: ServiceCall) -> None:
        _cap(engine, engine.site.root.id, call.data["limit_kw"], "site limit")
        changed()

    def set_node_limit(call: ServiceCall) -> None:
        node = call.data["node"]
        try:
            engine.site.node(node)
        except KeyError:
            raise LookupError(f"the site has no node {node!r}") from None
        _cap(engine, node, call.data["limit_kw"], f"{node} limit")
        changed()

    def set_charger_limit(call: ServiceCall) -> None:
        entity_id, amps = call.data["entity_id"], call.data["limit_a"]
        if entity_id not in engine.nodes:
            raise LookupError(f"{entity_id} is not a charger of the site tree")
        if amps is None:
            engine.charger_caps.pop(entity_id, None)
        else:
            engine.charger_caps[entity_id] = amps
        changed()

    def set_vehicle_goal(call: ServiceCall) -> None:
        goal = session(call).goal
        for key in ("energy_kwh", "target_soc", "departure"):
            if key in call.data:
                setattr(goal, key, call.data[key])
        changed()

    def set_priority(call: ServiceCall) -> None:
        session(call).priority = call.data["priority"]
        changed()

    def pause(call: ServiceCall) -> None:
        session(call).paused = True
        changed()

    def resume(call: ServiceCall) -> None:
        session(call).paused = False
        changed()

    async def emergency_stop(call: ServiceCall) -> None:
        engine.emergency = True
        await engine.round()  # now, not at the next tick

    async def release(call: ServiceCall) -> None:
        engine.emergency = False
        for tracked in engine.sessions.values():
            tracked.last_command_a = None  # every charger gets its limit anew
        await engine.round()

    def replan(call: ServiceCall) -> None:
        engine.planner.request(engine.inputs())

    target = {vol.Required("entity_id"): _ENTITY}
    for name, handler, schema, text in (
        ("set_site_limit", set_site_limit, {_LIMIT_KW: _KW},
         "Cap the whole site in kW (null removes the cap)."),
        ("set_node_limit", set_node_limit, {vol.Required("node"): str, _LIMIT_KW: _KW},
         "Cap one node of the electrical tree in kW (null removes the cap)."),
        ("set_charger_limit", set_charger_limit,
         {**target, vol.Required("limit_a"): _AMPS},
         "Cap one charger in A per phase (null removes the cap)."),
        ("set_vehicle_goal", set_vehicle_goal,
         {**target, vol.Optional("energy_kwh"): vol.All(vol.Coerce(float), vol.Range(min=0)),
          vol.Optional("target_soc"): vol.All(vol.Coerce(float), vol.Range(min=0, max=100)),
          vol.Optional("departure"): _aware},
         "Energy (or state of charge) the vehicle on this charger needs, and when it leaves."),
        ("set_priority", set_priority, {**target, vol.Required("priority"): int},
         "Higher priority sessions are served first."),
        ("pause", pause, target, "Pause this charger's session (0 A) until resume."),
        ("resume", resume, target, "Let a paused session charge again."),
        ("emergency_stop", emergency_stop, {}, "Every charger to 0 at once, held until release."),
        ("release", release, {}, "End an emergency stop."),
    ):  # fmt: skip
        register("charging", name, handler, schema, text)
    register("smart_charging", "replan", replan, {}, "Plan again now.")


def _cap(engine: Engine, node: str, kw: float | None, why: str) -> None:
    if kw is None:
        engine.node_caps.pop(node, None)
    else:
        engine.node_caps[node] = Cap(kw, f"{why} {kw:g} kW")
