"""Running an automation's actions: one `Runner` per run walks the steps with its variables,
context and trace; each action kind gets a `Step` with what it needs (render, conditions,
nested sequences, child contexts, triggers for waits).

A failing step is recorded in the trace and ends the run (unless `continue_on_error`); nothing
an action does can raise out of the run.
"""

from __future__ import annotations

import logging
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hub.automation.conditions import ConditionBuilder
from hub.automation.config import ConditionConfig, StepConfig, TriggerConfig
from hub.automation.registry import Detach, Platforms, TriggerInfo
from hub.automation.templates import Template, render_complex
from hub.bus import Context

if TYPE_CHECKING:
    from hub.automation.trace import RunTrace, TraceStore
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

TriggerCallback = Callable[[dict[str, Any], Context | None, TriggerConfig], None]


class StopRun(Exception):
    """`stop:` (or a wait that timed out without continue_on_timeout) ends the run here."""

    def __init__(self, reason: str, error: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.error = reason, error


class WaitTimeout(StopRun):
    """A wait timed out and `continue_on_timeout` is false."""


class ConditionFailed(Exception):
    """A condition used as an action was false: the sequence it is in stops there (at the top
    level: the run), as in Home Assistant. Not an error."""


class StepFailed(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


def describe(err: BaseException) -> str:
    text = str(err)
    return text if type(err).__name__ in ("TemplateError", "ServiceValidationError") or \
        isinstance(err, LookupError) else f"{type(err).__name__}: {text}"  # fmt: skip


def attach_triggers(
    hub: Hub,
    platforms: Platforms,
    name: str,
    triggers: Sequence[TriggerConfig],
    variables: Mapping[str, Any],
    callback: TriggerCallback,
) -> Detach:
    """Attach every enabled trigger; each firing calls `callback(trigger data, context, config)`
    with `platform`, `id` (the configured one or the index) and `idx` added to the data."""
    removers: list[Detach] = []
    info = TriggerInfo(hub, name, dict(variables), platforms)
    for config in triggers:
        if not config.enabled:
            continue

        def fire(data: dict[str, Any], context: Context | None, cfg: TriggerConfig = config):
            trigger = {"platform": cfg.platform, **data, "id": cfg.id or str(cfg.idx),
                       "idx": str(cfg.idx), "alias": cfg.alias}  # fmt: skip
            callback(trigger, context, cfg)

        try:
            removers.append(platforms.triggers[config.platform].attach(info, config.config, fire))
        except Exception:
            # One broken trigger must not silence the automation's others.
            _LOGGER.exception("%s: trigger %d (%s) could not be attached", name, config.idx,
                              config.platform)  # fmt: skip

    def detach() -> None:
        for remove in removers:
            try:
                remove()
            except Exception:
                _LOGGER.exception("%s: detaching a trigger failed", name)

    return detach


class Step:
    """What an action kind's `run(step, config)` works with."""

    def __init__(self, runner: Runner, config: StepConfig, path: str, scope: ChainMap) -> None:
        self.runner, self.step_config, self.path, self.scope = runner, config, path, scope
        self.changed: dict[str, Any] = {}

    @property
    def hub(self) -> Hub:
        return self.runner.hub

    @property
    def variables(self) -> Mapping[str, Any]:
        return self.scope

    @property
    def context(self) -> Context:
        return self.runner.context

    @property
    def name(self) -> str:
        return self.runner.name

    def render(self, value: Any) -> Any:
        """Data as written, with every template in it rendered with the run's variables."""
        if isinstance(value, Template):
            value.hub = self.hub
            return value.render(dict(self.scope))
        return render_complex(value, dict(self.scope), self.hub)

    def child_context(self) -> Context:
        """A context for what this step causes (a service call, an event): its parent is the run,
        so a charger command can be traced back to the run and its trigger."""
        return self.runner.child_context()

    def set_variable(self, name: str, value: Any) -> None:
        """Where the name is already defined (an outer sequence), else in this sequence's scope."""
        target = next((m for m in self.scope.maps if name in m), self.scope.maps[0])
        target[name] = value
        self.changed[name] = value

    def check(self, conditions: Sequence[ConditionConfig], subpath: str) -> bool:
        checker = self.runner.conditions.build_all(conditions, f"{self.path}/{subpath}")
        return checker(self.scope)

    async def run_sequence(
        self, steps: Sequence[StepConfig], subpath: str, scope: ChainMap | None = None
    ) -> None:
        # A false condition ends the sequence it is in (the rest of a choose branch, one repeat
        # iteration), not the whole run: what Home Assistant does.
        try:
            await self.runner.sequence(
                steps, f"{self.path}/{subpath}", scope or self.scope.new_child()
            )
        except ConditionFailed:
            pass

    async def run_step(self, step: StepConfig, subpath: str, scope: ChainMap) -> None:
        await self.runner.step(step, f"{self.path}/{subpath}", scope)

    def attach_triggers(
        self, triggers: Sequence[TriggerConfig], callback: TriggerCallback
    ) -> Detach:
        runner = self.runner
        return attach_triggers(
            runner.hub, runner.platforms, runner.name, triggers, self.scope, callback
        )


class Runner:
    """One run of an automation's actions."""

    def __init__(
        self,
        hub: Hub,
        platforms: Platforms,
        name: str,
        context: Context,
        trace: RunTrace,
        traces: TraceStore | None = None,
    ) -> None:
        self.hub, self.platforms, self.name = hub, platforms, name
        self.context, self.trace, self.traces = context, trace, traces
        self.conditions = ConditionBuilder(hub, platforms, name)

    def child_context(self) -> Context:
        child = self.trace.child_context()
        if self.traces is not None:
            self.traces.link(child.id, self.trace)
        return child

    async def sequence(self, steps: Sequence[StepConfig], prefix: str, scope: ChainMap) -> None:
        for index, step in enumerate(steps):
            await self.step(step, f"{prefix}/{index}", scope)

    async def step(self, config: StepConfig, path: str, scope: ChainMap) -> None:
        if not config.enabled:
            return
        kind = self.platforms.actions[config.kind]
        step = Step(self, config, path, scope)
        record = self.trace.step_start(path, config.kind, config.alias)
        try:
            result = await kind.run(step, config.config)
        except StopRun as stop:
            self.trace.step_end(record, result={"stop": stop.reason, "error": stop.error})
            raise
        except ConditionFailed:
            self.trace.step_end(record, result={"result": False})
            raise
        except StepFailed as failed:  # from a nested sequence: already recorded where it was
            self.trace.step_end(record, error=failed.message)
            if config.continue_on_error:
                return
            raise
        except Exception as err:
            message = describe(err)
            self.trace.step_end(record, error=message, changed_variables=step.changed)
            if config.continue_on_error:
                _LOGGER.warning("%s: %s failed, continuing: %s", self.name, path, message)
                return
            raise StepFailed(path, message) from err
        except BaseException:  # cancelled (restart mode, turn_off, shutdown)
            self.trace.step_end(record, error="cancelled", changed_variables=step.changed)
            raise
        self.trace.step_end(record, result=result, changed_variables=step.changed)
