"""Actions that hold other actions: `choose`, `if`/`then`/`else`, `repeat` (count, while, until,
for_each), `parallel` and `sequence`. Each nested sequence gets its own variable scope.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from hub.automation import cv
from hub.automation.config import actions_schema, conditions_schema
from hub.automation.registry import ActionType
from hub.automation.script import ConditionFailed, Step

YIELD_EVERY = 50  # repeat iterations between two turns of the event loop

# --- choose -----------------------------------------------------------------------------------
_OPTION = vol.Schema(
    {
        vol.Required("conditions"): conditions_schema,
        vol.Required("sequence"): actions_schema,
        vol.Optional("alias"): cv.string,
    }
)
CHOOSE_SCHEMA = vol.Schema(
    {
        vol.Required("choose"): vol.All(cv.ensure_list, [_OPTION]),
        vol.Optional("default"): actions_schema,
    }
)


async def run_choose(step: Step, config: Mapping[str, Any]) -> Any:
    for index, option in enumerate(config["choose"]):
        if step.check(option["conditions"], f"choose/{index}/conditions"):
            await step.run_sequence(option["sequence"], f"choose/{index}/sequence")
            return {"choice": index}
    if config.get("default"):
        await step.run_sequence(config["default"], "default")
        return {"choice": "default"}
    return {"choice": None}


# --- if ---------------------------------------------------------------------------------------
IF_SCHEMA = vol.Schema(
    {
        vol.Required("if"): conditions_schema,
        vol.Required("then"): actions_schema,
        vol.Optional("else"): actions_schema,
    }
)


async def run_if(step: Step, config: Mapping[str, Any]) -> Any:
    if step.check(config["if"], "if"):
        await step.run_sequence(config["then"], "then")
        return {"choice": "then"}
    if config.get("else"):
        await step.run_sequence(config["else"], "else")
        return {"choice": "else"}
    return {"choice": None}


# --- repeat -----------------------------------------------------------------------------------
def _one_loop(config: Mapping[str, Any]) -> Mapping[str, Any]:
    kinds = [k for k in ("count", "while", "until", "for_each") if k in config]
    if len(kinds) != 1:
        raise vol.Invalid("repeat needs exactly one of count, while, until, for_each")
    return config


def _items(value: Any) -> Any:
    if isinstance(value, str):
        return cv.template_string(value)
    if not isinstance(value, list):
        raise vol.Invalid(f"for_each takes a list (or a template giving one), got {value!r}")
    return cv.check_templates(value)


REPEAT_SCHEMA = vol.Schema(
    {
        vol.Required("repeat"): vol.All(
            vol.Schema(
                {
                    vol.Optional("count"): cv.templated(cv.positive_int),
                    vol.Optional("while"): conditions_schema,
                    vol.Optional("until"): conditions_schema,
                    vol.Optional("for_each"): _items,
                    vol.Required("sequence"): actions_schema,
                }
            ),
            _one_loop,
        )
    }
)


async def run_repeat(step: Step, config: Mapping[str, Any]) -> Any:
    loop = config["repeat"]
    sequence = loop["sequence"]

    async def iteration(index: int, last: bool | None, **extra: Any) -> None:
        scope = step.scope.new_child()
        info = {"index": index, "first": index == 1, **extra}
        if last is not None:
            info["last"] = last
        scope["repeat"] = info
        await step.run_sequence(sequence, "repeat/sequence", scope)
        if index % YIELD_EVERY == 0:
            # A long loop whose body never waits would otherwise hold the event loop to itself.
            await asyncio.sleep(0)

    if "count" in loop:
        count = int(step.render(loop["count"]))
        for index in range(1, count + 1):
            await iteration(index, index == count)
        return {"iterations": count}
    if "for_each" in loop:
        items = step.render(loop["for_each"])
        if isinstance(items, str | bytes) or not hasattr(items, "__iter__"):
            raise ValueError(f"for_each gave {items!r}, not a list")
        items = list(items)
        for index, item in enumerate(items, start=1):
            await iteration(index, index == len(items), item=item)
        return {"iterations": len(items)}
    index = 0
    while True:
        index += 1
        if "while" in loop:
            scope = step.scope.new_child()
            scope["repeat"] = {"index": index, "first": index == 1}
            checker = step.runner.conditions.build_all(loop["while"], f"{step.path}/repeat/while")
            if not checker(scope):
                return {"iterations": index - 1}
        await iteration(index, None)
        if "until" in loop:
            scope = step.scope.new_child()
            scope["repeat"] = {"index": index, "first": index == 1}
            checker = step.runner.conditions.build_all(loop["until"], f"{step.path}/repeat/until")
            if checker(scope):
                return {"iterations": index}


# --- parallel and sequence --------------------------------------------------------------------
PARALLEL_SCHEMA = vol.Schema({vol.Required("parallel"): actions_schema})
SEQUENCE_SCHEMA = vol.Schema({vol.Required("sequence"): actions_schema})


async def run_parallel(step: Step, config: Mapping[str, Any]) -> Any:
    """Every branch at once, each in its own scope. A false condition ends only its branch; an
    error or a stop in one cancels the others and ends the run."""

    async def branch(index: int, action: Any) -> None:
        with contextlib.suppress(ConditionFailed):
            await step.run_step(action, f"parallel/{index}", step.scope.new_child())

    tasks = [asyncio.ensure_future(branch(i, a)) for i, a in enumerate(config["parallel"])]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"branches": len(tasks)}


async def run_sequence(step: Step, config: Mapping[str, Any]) -> Any:
    await step.run_sequence(config["sequence"], "sequence")
    return None


ACTIONS: dict[str, ActionType] = {
    "choose": ActionType(CHOOSE_SCHEMA, run_choose),
    "if": ActionType(IF_SCHEMA, run_if),
    "repeat": ActionType(REPEAT_SCHEMA, run_repeat),
    "parallel": ActionType(PARALLEL_SCHEMA, run_parallel),
    "sequence": ActionType(SEQUENCE_SCHEMA, run_sequence),
}
