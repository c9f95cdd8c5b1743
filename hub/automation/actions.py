"""Leaf actions: service calls (`action:`/`service:`), `delay`, `wait_template`,
`wait_for_trigger`, `event`, `stop`, `variables`, `notify` and a condition used as an action.

Waits and delays run on the hub clock, so a simulated day runs them in milliseconds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from hub.automation import cv
from hub.automation.config import condition, triggers_schema, variables_schema
from hub.automation.registry import ActionType
from hub.automation.script import ConditionFailed, Step, StopRun, WaitTimeout
from hub.automation.templates import Template, TemplateError, TemplateTracker, is_template
from hub.automation.triggers import render_duration, truthy
from hub.bus import Context

_SERVICE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")


def _service_name(value: Any) -> Any:
    if isinstance(value, str) and is_template(value):
        return cv.template_string(value)
    if not isinstance(value, str) or not _SERVICE.match(value.strip().lower()):
        raise vol.Invalid(f"expected a service like charging.set_site_limit, got {value!r}")
    return value.strip().lower()


def _data(value: Any) -> Any:
    if isinstance(value, str) and is_template(value):
        return cv.template_string(value)
    if not isinstance(value, Mapping):
        raise vol.Invalid(f"expected a mapping (or a template giving one), got {value!r}")
    return dict(cv.check_templates(value))


def _one_service_key(config: Mapping[str, Any]) -> Mapping[str, Any]:
    if ("action" in config) == ("service" in config):
        raise vol.Invalid("a service call needs `action:` (or the older `service:`)")
    return config


SERVICE_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("action"): _service_name,
            vol.Optional("service"): _service_name,
            vol.Optional("data"): _data,
            vol.Optional("data_template"): _data,
            vol.Optional("target"): _data,
            vol.Optional("entity_id"): cv.templated(cv.entity_ids),
            vol.Optional("response_variable"): vol.Match(r"^[A-Za-z_][A-Za-z0-9_]*$"),
        }
    ),
    _one_service_key,
)


def _ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in cv.ensure_list(value)]


async def run_service(step: Step, config: Mapping[str, Any]) -> Any:
    """Call the service once, or once per target entity: evhub services take one `entity_id`."""
    name = step.render(config.get("action") or config.get("service"))
    if not isinstance(name, str) or not _SERVICE.match(name):
        raise ValueError(f"{name!r} is not a service name (domain.service)")
    domain, service = name.split(".", 1)
    data = {**(step.render(config.get("data_template") or {}) or {}),
            **(step.render(config.get("data") or {}) or {})}  # fmt: skip
    target = dict(step.render(config.get("target") or {}) or {})
    ids = _ids(target.pop("entity_id", None)) + _ids(step.render(config.get("entity_id")))
    if not ids and isinstance(data.get("entity_id"), list):
        ids = _ids(data.pop("entity_id"))
    data.update(target)  # other target keys (node, site) are data to our services
    calls = [{**data, "entity_id": entity} for entity in ids] if ids else [data]
    results: list[dict[str, Any]] = []
    for payload in calls:
        context = step.child_context()
        response = await step.hub.services.call(domain, service, payload, context)
        results.append({"data": payload, "response": response, "context": context.as_dict()})
    if "response_variable" in config:
        responses = [r["response"] for r in results]
        step.set_variable(config["response_variable"],
                          responses[0] if len(responses) == 1 else responses)  # fmt: skip
    return {"service": name, "calls": results}


# --- delay ------------------------------------------------------------------------------------
DELAY_SCHEMA = vol.Schema({vol.Required("delay"): cv.duration_or_template})


async def run_delay(step: Step, config: Mapping[str, Any]) -> Any:
    delay = render_duration(config["delay"], step.scope, step.hub)
    await step.hub.clock.sleep(delay.total_seconds())
    return {"delay": delay.total_seconds()}


# --- waits ------------------------------------------------------------------------------------
_WAIT_COMMON = {
    vol.Optional("timeout"): cv.duration_or_template,
    vol.Optional("continue_on_timeout", default=True): vol.Boolean(),
}
WAIT_TEMPLATE_SCHEMA = vol.Schema(
    {vol.Required("wait_template"): cv.template_string, **_WAIT_COMMON}
)
WAIT_FOR_TRIGGER_SCHEMA = vol.Schema(
    {vol.Required("wait_for_trigger"): triggers_schema, **_WAIT_COMMON}
)


async def _wait(step: Step, config: Mapping[str, Any], future: asyncio.Future[Any]) -> Any:
    """Wait for `future` up to the timeout on the hub clock; None when it timed out."""
    timeout = None
    if "timeout" in config:
        timeout = render_duration(config["timeout"], step.scope, step.hub)
    started = step.hub.clock.monotonic()
    timer = None
    if timeout is not None:
        timer = step.hub.clock.call_later(
            timeout.total_seconds(), lambda: future.done() or future.set_result(None)
        )
    try:
        result = await future
    finally:
        if timer is not None:
            timer.cancel()
    remaining = None
    if timeout is not None:
        elapsed = step.hub.clock.monotonic() - started
        remaining = max(0.0, timeout.total_seconds() - elapsed)
    return result, remaining


def _timed_out(step: Step, config: Mapping[str, Any]) -> None:
    if not config["continue_on_timeout"]:
        raise WaitTimeout("timeout", error=False)


async def run_wait_template(step: Step, config: Mapping[str, Any]) -> Any:
    template: Template = config["wait_template"]
    template.hub = step.hub
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def rendered(result: Any, previous: Any = None) -> None:
        if not future.done() and not isinstance(result, TemplateError) and truthy(result):
            future.set_result(True)

    tracker = TemplateTracker(step.hub, template, dict(step.scope), rendered)
    tracker.start()
    if isinstance(tracker.result, TemplateError):
        tracker.stop()
        raise tracker.result
    if truthy(tracker.result):
        future.set_result(True)
    try:
        done, remaining = await _wait(step, config, future)
    finally:
        tracker.stop()
    wait = {"completed": bool(done), "remaining": remaining}
    step.set_variable("wait", wait)
    if not done:
        _timed_out(step, config)
    return wait


async def run_wait_for_trigger(step: Step, config: Mapping[str, Any]) -> Any:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def fired(data: dict[str, Any], context: Context | None, _: Any) -> None:
        if not future.done():
            future.set_result(data)

    detach = step.attach_triggers(config["wait_for_trigger"], fired)
    try:
        trigger, remaining = await _wait(step, config, future)
    finally:
        detach()
    wait = {"trigger": trigger, "remaining": remaining}
    step.set_variable("wait", wait)
    if trigger is None:
        _timed_out(step, config)
    return {"trigger": trigger, "remaining": remaining}


# --- event, stop, variables, notify, condition ------------------------------------------------
EVENT_SCHEMA = vol.Schema(
    {
        vol.Required("event"): cv.templated(cv.string),
        vol.Optional("event_data"): _data,
        vol.Optional("event_data_template"): _data,
    }
)


async def run_event(step: Step, config: Mapping[str, Any]) -> Any:
    event_type = str(step.render(config["event"]))
    data = {**(step.render(config.get("event_data_template") or {}) or {}),
            **(step.render(config.get("event_data") or {}) or {})}  # fmt: skip
    context = step.child_context()
    step.hub.bus.fire(event_type, data, context)
    return {"event": event_type, "event_data": data, "context": context.as_dict()}


STOP_SCHEMA = vol.Schema(
    {vol.Required("stop"): cv.templated(cv.string), vol.Optional("error", default=False): bool}
)


async def run_stop(step: Step, config: Mapping[str, Any]) -> Any:
    raise StopRun(str(step.render(config["stop"])), error=config["error"])


VARIABLES_SCHEMA = vol.Schema({vol.Required("variables"): variables_schema})


async def run_variables(step: Step, config: Mapping[str, Any]) -> Any:
    # One at a time: a later variable may use an earlier one.
    for name, value in config["variables"].items():
        step.set_variable(name, step.render(value))
    return None


def _notify_service(value: Any) -> str:
    name = str(value).strip().lower().removeprefix("notify.")
    if not re.match(r"^[a-z0-9_]+$", name):
        raise vol.Invalid(f"expected a notify service name like ops_email, got {value!r}")
    return name


NOTIFY_SCHEMA = vol.Schema(
    {
        vol.Required("notify"): _notify_service,
        vol.Required("message"): vol.All(cv.string, cv.check_templates),
        vol.Optional("title"): vol.All(cv.string, cv.check_templates),
        vol.Optional("data"): _data,
        vol.Optional("target"): vol.All(cv.ensure_list, cv.check_templates),
    }
)


async def run_notify(step: Step, config: Mapping[str, Any]) -> Any:
    payload = {key: step.render(config[key])
               for key in ("message", "title", "data", "target") if key in config}  # fmt: skip
    payload["message"] = str(payload["message"])
    if "title" in payload:
        payload["title"] = str(payload["title"])
    context = step.child_context()
    response = await step.hub.services.call("notify", config["notify"], payload, context)
    return {"service": f"notify.{config['notify']}", "data": payload, "response": response,
            "context": context.as_dict()}  # fmt: skip


def _condition_step(value: Any) -> Mapping[str, Any]:
    return {"check": condition(value)}


async def run_condition(step: Step, config: Mapping[str, Any]) -> Any:
    checker = step.runner.conditions.build(config["check"], step.path)
    if not checker(step.scope):
        raise ConditionFailed(step.path)
    return {"result": True}


ACTIONS: dict[str, ActionType] = {
    "service": ActionType(SERVICE_SCHEMA, run_service),
    "delay": ActionType(DELAY_SCHEMA, run_delay),
    "wait_template": ActionType(WAIT_TEMPLATE_SCHEMA, run_wait_template),
    "wait_for_trigger": ActionType(WAIT_FOR_TRIGGER_SCHEMA, run_wait_for_trigger),
    "event": ActionType(EVENT_SCHEMA, run_event),
    "stop": ActionType(STOP_SCHEMA, run_stop),
    "variables": ActionType(VARIABLES_SCHEMA, run_variables),
    "notify": ActionType(NOTIFY_SCHEMA, run_notify),
    "condition": ActionType(_condition_step, run_condition),
}
