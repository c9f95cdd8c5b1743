"""One automation as an entity (`automation.<object_id>`, on/off): attaches its triggers, checks its
conditions, and runs its actions in its mode (single, restart, queued, parallel), tracing each run.

A run is a task of its own with a Context whose parent is the trigger's; what the run causes
carries a child of it. A failing run is logged and traced; it never raises out of here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import ChainMap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hub.automation.conditions import ConditionBuilder
from hub.automation.config import AutomationConfig, BrokenAutomation, TriggerConfig
from hub.automation.script import (
    ConditionFailed,
    Runner,
    StepFailed,
    StopRun,
    WaitTimeout,
    attach_triggers,
)
from hub.automation.templates import TemplateError, render_complex
from hub.automation.trace import RunTrace, tracing
from hub.bus import Context, new_id
from hub.core import CoreState
from hub.entities import Entity, slugify
from hub.states import STATE_UNAVAILABLE

if TYPE_CHECKING:
    from hub.automation.component import Automations

_LOGGER = logging.getLogger(__name__)

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class AutomationEntity(Entity):
    """`automation.<object_id>`: state on/off (unavailable when its configuration is broken),
    attributes id, friendly_name, last_triggered, mode, current (runs now), max."""

    domain = "automation"

    def __init__(self, component: Automations, config: AutomationConfig | BrokenAutomation):
        super().__init__(config.id, config.alias or config.id)
        self.component, self.config = component, config
        self.key = component.key_of(config)
        self.is_on = False
        self.last_triggered: Any = None
        self.runs: dict[asyncio.Task[Any], RunTrace] = {}
        self._queue = asyncio.Lock()
        self._detach: Any = None

    # --- what the state machine shows --------------------------------------------------------
    @property
    def broken(self) -> bool:
        return isinstance(self.config, BrokenAutomation)

    @property
    def available(self) -> bool:
        return not self.broken

    def suggested_object_id(self) -> str:
        # As in Home Assistant: the alias names the entity, else the id, else its position.
        return slugify(self.config.alias or self.config.id or f"automation_{self.config.index}")

    def native_state(self) -> str:
        return "on" if self.is_on else "off"

    def state_attributes(self) -> Mapping[str, Any]:
        attrs: dict[str, Any] = {"id": self.config.id}
        if isinstance(self.config, AutomationConfig):
            attrs["last_triggered"] = (
                self.last_triggered.isoformat() if self.last_triggered is not None else None
            )
            attrs["mode"] = self.config.mode
            attrs["current"] = len(self.runs)
            if self.config.mode in ("queued", "parallel"):
                attrs["max"] = self.config.max
        return attrs

    def write_state(self, context: Context | None = None) -> None:
        if not self.broken or self.hub is None or not self.entity_id:
            super().write_state(context)
            return
        if self.registry_entry is not None and self.registry_entry.disabled:
            return
        # Unavailable, and saying why: the errors with file, line and key.
        errors = [str(e) for e in self.config.errors]  # type: ignore[union-attr]
        attrs = {"friendly_name": self.name, "id": self.config.id, "errors": errors}
        self.hub.states.set(self.entity_id, STATE_UNAVAILABLE, attrs, context=context)

    # --- on and off ------------------------------------------------------------------------------
    async def removed_from_hub(self) -> None:
        self.detach()
        await self.cancel_runs()

    def attach(self) -> None:
        if self.broken or self._detach is not None or self.hub is None:
            return
        config: AutomationConfig = self.config  # type: ignore[assignment]
        try:
            variables = render_complex(config.trigger_variables, {}, self.hub)
        except TemplateError as err:
            _LOGGER.error("%s: trigger_variables: %s", self.entity_id, err)
            variables = {}
        self._detach = attach_triggers(
            self.hub, self.component.platforms, self.entity_id, config.triggers, variables,
            self._triggered,
        )  # fmt: skip

    def detach(self) -> None:
        if self._detach is not None:
            self._detach()
            self._detach = None

    async def turn_on(self) -> None:
        if self.broken:
            raise ValueError(f"{self.entity_id} has configuration errors; fix them and reload")
        if not self.is_on:
            self.is_on = True
            self.attach()
            self.write_state()
            self.component.remember(self)

    async def turn_off(self, stop_actions: bool = True) -> None:
        if self.is_on:
            self.is_on = False
            self.detach()
            if stop_actions:
                await self.cancel_runs()
            self.write_state()
            self.component.remember(self)

    async def cancel_runs(self) -> None:
        tasks = list(self.runs)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # --- a trigger fired --------------------------------------------------------------------
    def _triggered(
        self, trigger: dict[str, Any], context: Context | None, config: TriggerConfig
    ) -> None:
        if self.is_on:
            self.run(trigger, context, trigger_variables=config.variables)

    def run(
        self,
        trigger: Mapping[str, Any],
        context: Context | None = None,
        *,
        variables: Mapping[str, Any] | None = None,
        trigger_variables: Mapping[str, Any] | None = None,
        skip_condition: bool = False,
    ) -> RunTrace | None:
        """Check the conditions and start a run in the automation's mode; returns its trace."""
        if self.broken or self.hub is None:
            return None
        hub, config = self.hub, self.config
        assert isinstance(config, AutomationConfig)
        parent = context or Context()
        run_context = Context(parent_id=parent.id, user_id=parent.user_id)
        trace = RunTrace(
            hub.clock, automation_id=self.key, entity_id=self.entity_id, run_id=new_id(),
            context=run_context, trigger=trigger,
        )  # fmt: skip
        self.component.traces.add(self.key, trace, config.stored_traces)
        state = hub.states.get(self.entity_id)
        scope: dict[str, Any] = {"this": state, "trigger": dict(trigger), **(variables or {})}
        with tracing(trace):
            try:
                for source in (trigger_variables or {}, config.variables):
                    for name, value in source.items():
                        scope[name] = render_complex(value, dict(scope), hub)
            except TemplateError as err:
                _LOGGER.error("%s: variables: %s", self.entity_id, err)
                trace.end("error", error=f"variables: {err}")
                return trace
            trace.set_variables(scope)
            if not skip_condition and config.conditions:
                builder = ConditionBuilder(hub, self.component.platforms, self.entity_id)
                if not builder.build_all(config.conditions, "condition")(scope):
                    trace.end("failed_conditions")
                    return trace
        if not self._admit(trace):
            return trace
        previous = list(self.runs) if config.mode == "restart" else []
        for task in previous:
            task.cancel()
        self.last_triggered = hub.now()
        # Runs are background tasks (a run may wait for hours) except those the hub's own
        # shutdown started: those get the shutdown's grace period to finish.
        task = hub.create_task(
            self._execute(trace, run_context, scope, previous),
            f"automation {self.entity_id}",
            background=hub.state is not CoreState.STOPPING,
        )
        self.runs[task] = trace
        task.add_done_callback(self._run_done)
        self.write_state(run_context)
        return trace

    def _admit(self, trace: RunTrace) -> bool:
        """The mode's verdict on a new run while others are running."""
        config: AutomationConfig = self.config  # type: ignore[assignment]
        running = len(self.runs)
        if config.mode == "single" and running:
            verdict, message = "failed_single", "already running"
        elif config.mode in ("queued", "parallel") and running >= config.max:
            verdict, message = "failed_max_runs", f"maximum number of runs exceeded ({config.max})"
        else:
            return True
        if config.max_exceeded != "silent":
            _LOGGER.log(_LEVELS[config.max_exceeded], "%s: %s", self.entity_id, message)
        trace.end(verdict)
        return False

    def _run_done(self, task: asyncio.Task[Any]) -> None:
        self.runs.pop(task, None)
        self.write_state()

    async def _execute(
        self,
        trace: RunTrace,
        context: Context,
        scope: dict[str, Any],
        previous: list[asyncio.Task[Any]],
    ) -> None:
        config: AutomationConfig = self.config  # type: ignore[assignment]
        with tracing(trace):
            try:
                if previous:  # restart: the old run is cancelled and gone before this one starts
                    await asyncio.wait(previous)
                if config.mode == "queued":
                    async with self._queue:
                        await self._actions(trace, context, scope)
                else:
                    await self._actions(trace, context, scope)
            except asyncio.CancelledError:
                trace.end("cancelled")
                raise

    async def _actions(self, trace: RunTrace, context: Context, scope: dict[str, Any]) -> None:
        assert self.hub is not None
        config: AutomationConfig = self.config  # type: ignore[assignment]
        runner = Runner(
            self.hub, self.component.platforms, self.entity_id, context, trace,
            self.component.traces,
        )  # fmt: skip
        try:
            await runner.sequence(config.actions, "action", ChainMap(scope))
        except WaitTimeout:
            trace.end("timeout", stop_reason="a wait timed out")
        except StopRun as stop:
            if stop.error:
                _LOGGER.error("%s stopped with an error: %s", self.entity_id, stop.reason)
                trace.end("error", error=stop.reason, stop_reason=stop.reason)
            else:
                trace.end("finished", stop_reason=stop.reason)
        except ConditionFailed as failed:
            trace.end("aborted", stop_reason=f"condition {failed} was false")
        except StepFailed as failed:
            _LOGGER.error("%s: %s failed: %s", self.entity_id, failed.path, failed.message)
            trace.end("error", error=f"{failed.path}: {failed.message}")
        except Exception as err:  # a bug of ours: the run ends, the hub goes on
            _LOGGER.exception("%s: run failed", self.entity_id)
            trace.end("error", error=f"{type(err).__name__}: {err}")
        else:
            trace.end("finished")
