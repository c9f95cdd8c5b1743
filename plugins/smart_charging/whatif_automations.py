"""`evhub plan --policy automations:NAME`: the site run by a real hub on the simulated clock, the
smart-charging engine and a set of automations loaded, metered like every other what-if policy.

NAME is an automations file: a path (`rules/peak.yaml`), or a name looked up next to the site
file (or in the current directory for a quick look) as `automations_NAME.yaml`, then
`NAME.yaml`. The file holds what `automation:` holds in configuration.yaml (a list), or a whole
configuration.yaml whose `automation:` is taken. Every automation is validated first: one error
and the command stops with the file, line and key (exit code 2), as `evhub check-config` does.

The run: a `Hub` on a `SimClock` from one minute before the period, the smart_charging plugin
(the live engine: allocator every ENGINE_INTERVAL_S and on every event, the planner re-planning on
arrivals, departures, caps and service calls), the automations, `tariff.grid_import` with the
scenario's prices (and the `prices.grid_import` signal), and `whatif_hub.SimCharger`s on every
charger of the site, each vehicle plugged in and out by `whatif.assign()`'s visits. The
planner's solves run inline, so simulated time never moves while it thinks: the run is
deterministic. See docs/planning.md for how this differs from the `smart` policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any

import voluptuous as vol

from hub.automation.config import automation_block, check_automations
from hub.bus import EVENT_STATE_CHANGED, Event
from hub.charging.signals import SignalStore
from hub.clock import SimClock
from hub.config import ConfigError, load_yaml
from hub.core import Hub
from hub.plugins import PluginHost
from plugins.smart_charging.planning import EVENT_PLANNED
from plugins.smart_charging.whatif import Scenario, Visit, assign
from plugins.smart_charging.whatif_hub import (
    METER_S,
    PowerLog,
    SimCharger,
    SimTariff,
    hub_site,
    site_meter,
)
from plugins.smart_charging.whatif_load import Meter, PolicyResult

PREFIX = "automations:"
TARIFF = "grid_import"
ENGINE_INTERVAL_S = 60.0  # the live default is 5 s; every event triggers a round anyway
WARM_UP = timedelta(minutes=1)  # rules timed at the period's first minute fire
_SHOWN = 3  # error messages repeated in the summary


class AutomationsError(Exception):
    """The automations cannot be used: the message names the file (and line)."""


@dataclass(frozen=True)
class AutomationSet:
    """A validated automations file, as `automation:` holds it."""

    policy: str  # "automations:NAME", as given
    path: Path
    block: list[Any]


@dataclass
class RunSummary:
    """What the automations did in a run, for the report (not part of `--json`)."""

    automations: int = 0
    runs: int = 0
    notifications: int = 0
    errors: list[str] = field(default_factory=list)  # from the hub's log: rules, the engine
    warnings: list[str] = field(default_factory=list)  # the automations' (continue_on_error)


# --- finding and checking the file ----------------------------------------------------------------
def candidates(name: str, site_path: Path | None) -> list[Path]:
    """Where `automations:NAME` may be, in the order tried."""
    given = Path(name).expanduser()
    if given.suffix in (".yaml", ".yml") or len(given.parts) > 1:
        return [given]
    folder = site_path.parent if site_path is not None else Path()
    return [folder / f"automations_{name}.yaml", folder / f"{name}.yaml"]


def load(policy: str, site_path: Path | None) -> AutomationSet:
    """The automations of `policy` (automations:NAME), validated; AutomationsError says why not."""
    name = policy.removeprefix(PREFIX).strip()
    if not name:
        raise AutomationsError(f"policy {policy}: name an automations file (automations:FILE)")
    tried = candidates(name, site_path)
    path = next((p for p in tried if p.is_file()), None)
    if path is None:
        raise AutomationsError(
            f"policy {policy}: no automations file ({', '.join(str(p) for p in tried)})"
        )
    try:
        raw = load_yaml(path)
    except ConfigError as err:
        raise AutomationsError(_located(err, path)) from None
    if isinstance(raw, Mapping) and "automation" in raw:
        raw = raw["automation"]  # a whole configuration.yaml
    try:
        block = automation_block(raw)
    except vol.Invalid as err:
        raise AutomationsError(f"{path}: {err.msg}") from None
    errors = check_automations(block, None)
    if errors:
        lines = "\n".join(_located(e, path) for e in errors)
        raise AutomationsError(f"policy {policy}: {len(errors)} error(s) in {path}:\n{lines}")
    return AutomationSet(policy, path, list(block))


def _located(err: ConfigError, path: Path) -> str:
    """The error with the file as the user named it (the loader names it by its folder)."""
    if err.file in (None, path.name):
        err = ConfigError(err.message, str(path), err.line, err.key)
    return str(err)


def site_time_zone(site_path: Path | None) -> str | None:
    """`hub: time_zone` of a configuration.yaml given as --site, if it has one."""
    if site_path is None:
        return None
    try:
        raw = load_yaml(site_path)
    except ConfigError:
        return None
    hub = raw.get("hub") if isinstance(raw, Mapping) else None
    zone = hub.get("time_zone") if isinstance(hub, Mapping) else None
    return zone if isinstance(zone, str) else None


# --- the run --------------------------------------------------------------------------------------
def simulate_automations(
    scenario: Scenario,
    automations: AutomationSet,
    zone: tzinfo,
    visits: Sequence[Visit] | None = None,
) -> tuple[PolicyResult, RunSummary]:
    """Run the hub with `automations` over the scenario's period; local times are in `zone`.

    Online whatever the scenario says: the hub learns of a vehicle when it plugs in. It runs its
    own event loop, so it is called from synchronous code (the command line, a test)."""
    visits = assign(scenario) if visits is None else visits
    run = _Run(scenario, automations, zone, visits)
    with _quiet(run.summary):
        result = asyncio.run(run.main())
    return replace(result, foresight=False), run.summary


class _Inline(ThreadPoolExecutor):
    """Runs what is handed to a thread at once, on the loop: the planner's solve takes no
    simulated time, so the same inputs always give the same run."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # the awaiting task gets it, as from a thread
            future.set_exception(err)
        return future


class _Run:
    """One simulation: the hub, its simulated hardware, and the meter that reads the draws."""

    def __init__(
        self, scenario: Scenario, automations: AutomationSet, zone: tzinfo, visits: Sequence[Visit]
    ) -> None:
        self.sc, self.automations, self.zone, self.visits = scenario, automations, zone, visits
        self.summary = RunSummary(automations=len(automations.block))
        self.log = PowerLog()
        self.meter = Meter(scenario, visits)
        self.plans = 0

    def _hub(self, clock: SimClock) -> Hub:
        import plugins.smart_charging as smart_charging  # the package imports this module's caller

        conf = smart_charging.CONFIG_SCHEMA(
            {
                "interval": ENGINE_INTERVAL_S,
                "tariff": TARIFF,
                "demand_charge": self.sc.demand_charge,
            }
        )
        config = {
            "hub": {"name": f"evhub plan {self.automations.policy}"},
            "smart_charging": conf,
            "automation": self.automations.block,
        }
        hub = Hub(None, clock=clock, config=config)
        hub.time_zone = self.zone  # type: ignore[assignment] - any tzinfo does; a fixed offset too
        host = PluginHost()
        host.register("smart_charging", smart_charging)
        host.hub, hub.plugins = hub, host
        hub.site = hub_site(self.sc.site)
        return hub

    async def main(self) -> PolicyResult:
        asyncio.get_running_loop().set_default_executor(_Inline(max_workers=1))
        sc = self.sc
        clock = SimClock(start=sc.start - WARM_UP)
        hub = self._hub(clock)
        chargers = await self._hardware(hub)
        await hub.start()
        # What the hub would have kept from its last billing periods.
        hub.data["smart_charging"].planner.peak.recent_peaks_kw = list(sc.last_peaks_kw)
        plugged = [
            (i, v) for i, v in enumerate(self.visits) if v.charger is not None and v.plug < v.unplug
        ]
        # Departures first: a car leaving at 06:00 frees its charger for one plugging in then.
        for _i, v in plugged:
            assert v.charger is not None
            clock.call_at(v.unplug, chargers[v.charger.id].unplug)
        for i, v in plugged:
            assert v.charger is not None
            clock.call_at(v.plug, _plug(chargers[v.charger.id], i, v))
        grid_meter, sims = sc.site.meters.get("grid"), list(chargers.values())

        def report() -> None:
            for charger in sims:
                charger.report()
            if grid_meter:
                site_meter(hub, grid_meter, sims, sc.site.voltage)
            clock.call_later(METER_S, report)

        clock.call_at(sc.start, report)
        left = [v.request.energy_kwh for v in self.visits]
        try:
            for k in range(sc.steps):
                t0 = sc.start + k * sc.step
                await clock.advance_to(t0 + sc.step)
                await hub.block_till_done()
                draws, moments = self.log.take(t0, t0 + sc.step)
                for i, (p, e) in list(draws.items()):
                    draws[i] = (p, min(e, left[i]))
                    left[i] -= draws[i][1]
                self.meter.record(k, draws, moments)
        finally:
            await hub.stop()
        return self.meter.result(self.automations.policy, self.plans)

    async def _hardware(self, hub: Hub) -> dict[str, SimCharger]:
        """Chargers, the tariff and the notifiers the automations name, before the hub starts."""
        assert hub.site is not None
        chargers = {
            node.id: SimCharger(node, hub.site.voltage, self.log) for node in hub.site.chargers()
        }
        await hub.entities.add("whatif", list(chargers.values()))
        SignalStore.of(hub).publish(f"prices.{TARIFF}", self.sc.prices)
        await hub.entities.add("whatif", [SimTariff(TARIFF, self.sc.prices, self.sc.demand_charge)])
        for name in sorted(_notifiers(self.automations.block)):
            hub.services.register("notify", name, self._notified, None, "counted, not sent")
        hub.bus.listen(EVENT_STATE_CHANGED, self._count_run, _is_automation)
        hub.bus.listen(EVENT_PLANNED, self._count_plan)
        return chargers

    def _notified(self, call: Any) -> None:
        self.summary.notifications += 1

    def _count_plan(self, event: Event) -> None:
        self.plans += 1

    def _count_run(self, event: Event) -> None:
        old, new = event.data.get("old_state"), event.data.get("new_state")
        if old is None or new is None:
            return
        if new.attributes.get("last_triggered") != old.attributes.get("last_triggered"):
            self.summary.runs += 1


def _is_automation(data: Mapping[str, Any]) -> bool:
    return str(data.get("entity_id", "")).startswith("automation.")


def _plug(charger: SimCharger, index: int, visit: Visit) -> Callable[[], None]:
    return lambda: charger.plug(index, visit)


def _notifiers(value: Any) -> set[str]:
    """The notifiers the automations name (`notify: ops_log`, `action: notify.ops_log`): the
    plan has none, so each is a service that counts the messages instead of sending them."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "notify" and isinstance(item, str):
                found.add(item.strip().lower().removeprefix("notify."))
            elif key in ("action", "service") and isinstance(item, str):
                if item.startswith("notify.") and "{" not in item:
                    found.add(item.removeprefix("notify."))
            else:
                found |= _notifiers(item)
    elif isinstance(value, list):
        for item in value:
            found |= _notifiers(item)
    return found


# --- what the hub says meanwhile ------------------------------------------------------------------
class _Collect(logging.Handler):
    def __init__(self, summary: RunSummary) -> None:
        super().__init__(logging.WARNING)
        self.summary = summary

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.summary.errors.append(record.getMessage())
        elif record.name.startswith("hub.automation"):
            self.summary.warnings.append(record.getMessage())


@contextmanager
def _quiet(summary: RunSummary) -> Iterator[None]:
    """The hub's log lines (start, stop, every shortfall) would drown the report: its errors
    (a rule's, or the engine's) and the automations' warnings go to the summary instead."""
    handler = _Collect(summary)
    saved = []
    for name in ("hub", "plugins.smart_charging"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.setLevel(logging.WARNING)
        logger.propagate = False
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def describe(summary: RunSummary, policy: str, zone: tzinfo) -> list[str]:
    """The lines the report adds for an automation policy."""
    lines = [
        f"{policy}: {summary.automations} automations, {summary.runs} runs, "
        f"{summary.notifications} notifications (not sent), {len(summary.errors)} errors, "
        f"{len(summary.warnings)} warnings; local time {zone}; online (the hub learns of a "
        "vehicle when it plugs in)"
    ]
    for kind, messages in (("error", summary.errors), ("warning", summary.warnings)):
        for message in list(dict.fromkeys(messages))[:_SHOWN]:
            lines.append(f"{policy}: {kind}: {message}")
    return lines
