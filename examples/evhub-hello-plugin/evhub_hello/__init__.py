"""An example third-party evhub plugin, installed from its own distribution via an entry point.

It owns the `hello` configuration key, adds one sensor, one service and one template function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import voluptuous as vol

from hub.core import Hub
from hub.entities import Entity
from hub.plugins import hookimpl
from hub.services import ServiceCall

DOMAIN = "hello"

CONFIG_SCHEMA = vol.Schema({vol.Optional("greeting", default="Hello"): str})


class GreetingSensor(Entity):
    domain = "sensor"

    def __init__(self, greeting: str) -> None:
        super().__init__("hello-greeting", "greeting")
        self.greeting = greeting
        self.count = 0

    def native_state(self) -> str:
        return self.greeting

    def state_attributes(self) -> Mapping[str, Any]:
        return {"greeted": self.count}


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    sensor = GreetingSensor(config[DOMAIN]["greeting"])
    hub.data[DOMAIN] = sensor
    await hub.entities.add(DOMAIN, [sensor])


@hookimpl
def hub_register_services(hub: Hub, register: Callable[..., None]) -> None:
    def greet(call: ServiceCall) -> str:
        sensor: GreetingSensor = hub.data[DOMAIN]
        sensor.count += 1
        sensor.write_state(call.context)
        message = f"{sensor.greeting}, {call.data['name']}!"
        hub.bus.fire("hello_greeted", {"message": message}, call.context)
        return message

    register(DOMAIN, "greet", greet, {vol.Required("name"): str}, "Greet someone.")


@hookimpl
def hub_template_functions(register: Callable[..., None]) -> None:
    register("shout", lambda text: f"{text}!".upper())
