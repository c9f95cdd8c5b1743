"""Services as a user or automation calls them: validated, announced on the bus, then run."""

from __future__ import annotations

import asyncio

import pytest
import voluptuous as vol

from hub.bus import EVENT_CALL_SERVICE, EVENT_SERVICE_REGISTERED, Context, Event
from hub.core import Hub
from hub.services import ServiceCall, ServiceNotFound, ServiceValidationError

SET_LIMIT_SCHEMA = vol.Schema(
    {
        vol.Required("charger"): str,
        vol.Required("limit"): vol.All(vol.Coerce(float), vol.Range(min=6, max=32)),
        vol.Optional("schedule", default=list): [
            {vol.Required("start"): str, vol.Required("limit"): vol.Range(min=0, max=32)}
        ],
    }
)


async def test_sync_handler_result_is_returned_with_validated_data(hub: Hub) -> None:
    """Given `charging.set_limit`, when called with "16", the handler gets 16.0 and its answer
    comes back to the caller."""
    calls: list[ServiceCall] = []

    def set_limit(call: ServiceCall) -> dict[str, float]:
        calls.append(call)
        return {"applied": call.data["limit"]}

    hub.services.register("charging", "set_limit", set_limit, SET_LIMIT_SCHEMA)

    result = await hub.services.call("charging", "set_limit", {"charger": "garage", "limit": "16"})

    assert result == {"applied": 16.0}
    assert calls[0].data == {"charger": "garage", "limit": 16.0, "schedule": []}
    assert (calls[0].domain, calls[0].service) == ("charging", "set_limit")


async def test_async_handler_result_is_awaited_and_returned(hub: Hub) -> None:
    async def start(call: ServiceCall) -> str:
        await asyncio.sleep(0)
        return f"started {call.data['charger']}"

    hub.services.register("charging", "start", start, {vol.Required("charger"): str})

    assert await hub.services.call("charging", "start", {"charger": "garage"}) == "started garage"


async def test_plain_dict_schema_and_no_schema(hub: Hub) -> None:
    hub.services.register("demo", "echo", lambda call: dict(call.data))

    assert await hub.services.call("demo", "echo", {"anything": [1, 2]}) == {"anything": [1, 2]}
    assert await hub.services.call("demo", "echo") == {}


async def test_names_are_case_insensitive(hub: Hub) -> None:
    hub.services.register("Charging", "Pause", lambda call: "paused")

    assert hub.services.has("charging", "pause")
    assert await hub.services.call("CHARGING", "pause") == "paused"


async def test_bad_data_names_the_field_and_handler_does_not_run(hub: Hub) -> None:
    """Given a limit above the fuse, the user is told which field is wrong and nothing happens."""
    ran: list[ServiceCall] = []
    events: list[Event] = []
    hub.bus.listen(EVENT_CALL_SERVICE, events.append)
    hub.services.register("charging", "set_limit", ran.append, SET_LIMIT_SCHEMA)

    with pytest.raises(ServiceValidationError) as info:
        await hub.services.call("charging", "set_limit", {"charger": "garage", "limit": 63})

    assert "limit" in str(info.value)
    assert "charging.set_limit" in str(info.value)
    assert info.value.fields == ["limit"]
    assert ran == []
    assert events == []


async def test_missing_required_field_is_named(hub: Hub) -> None:
    hub.services.register("charging", "set_limit", lambda call: None, SET_LIMIT_SCHEMA)

    with pytest.raises(ServiceValidationError) as info:
        await hub.services.call("charging", "set_limit", {"limit": 10})

    assert "charger" in str(info.value)
    assert info.value.fields == ["charger"]


async def test_nested_bad_field_is_named_by_its_path(hub: Hub) -> None:
    """Given a schedule whose first slot exceeds 32 A, the message says `schedule.0.limit`."""
    hub.services.register("charging", "set_limit", lambda call: None, SET_LIMIT_SCHEMA)
    data = {
        "charger": "garage",
        "limit": 16,
        "schedule": [{"start": "22:00", "limit": 40}, {"start": "06:00", "limit": 10}],
    }

    with pytest.raises(ServiceValidationError) as info:
        await hub.services.call("charging", "set_limit", data)

    assert "schedule.0.limit" in str(info.value)
    assert info.value.fields == ["schedule.0.limit"]


async def test_validate_alone_gives_the_same_error_without_calling(hub: Hub) -> None:
    hub.services.register("charging", "set_limit", lambda call: None, SET_LIMIT_SCHEMA)

    assert hub.services.validate("charging", "set_limit", {"charger": "g", "limit": 6})[
        "limit"
    ] == pytest.approx(6.0)
    with pytest.raises(ServiceValidationError, match="limit"):
        hub.services.validate("charging", "set_limit", {"charger": "g", "limit": 1})


async def test_unknown_service_raises_service_not_found(hub: Hub) -> None:
    events: list[Event] = []
    hub.bus.listen(EVENT_CALL_SERVICE, events.append)
    hub.services.register("charging", "pause", lambda call: None)

    with pytest.raises(ServiceNotFound) as info:
        await hub.services.call("charging", "explode")
    with pytest.raises(ServiceNotFound):
        await hub.services.call("nosuchdomain", "pause")

    assert (info.value.domain, info.value.service) == ("charging", "explode")
    assert "charging.explode" in str(info.value)
    assert events == []


async def test_removed_service_is_not_found(hub: Hub) -> None:
    hub.services.register("charging", "pause", lambda call: None)

    hub.services.remove("charging", "pause")

    assert not hub.services.has("charging", "pause")
    with pytest.raises(ServiceNotFound):
        await hub.services.call("charging", "pause")


async def test_call_service_event_fires_with_context_before_handler(hub: Hub) -> None:
    """Given an automation calling a service, a listener sees the call (and who made it) before
    the handler acts, so the handler's effects can be traced to it."""
    order: list[str] = []
    events: list[Event] = []

    def on_call(event: Event) -> None:
        order.append("event")
        events.append(event)

    def handler(call: ServiceCall) -> None:
        order.append("handler")
        assert call.context is ctx

    hub.bus.listen(EVENT_CALL_SERVICE, on_call)
    hub.services.register("charging", "set_limit", handler, SET_LIMIT_SCHEMA)
    ctx = Context(user_id="alice")

    await hub.services.call("charging", "set_limit", {"charger": "g", "limit": 10}, context=ctx)

    assert order == ["event", "handler"]
    assert events[0].context is ctx
    assert events[0].data["domain"] == "charging"
    assert events[0].data["service"] == "set_limit"
    assert events[0].data["service_data"]["limit"] == 10.0


async def test_every_call_gets_its_own_context_when_none_is_given(hub: Hub) -> None:
    contexts: list[Context] = []
    hub.services.register("demo", "noop", lambda call: contexts.append(call.context))

    await hub.services.call("demo", "noop")
    await hub.services.call("demo", "noop")

    assert len({c.id for c in contexts}) == 2


async def test_handler_exception_reaches_the_caller(hub: Hub) -> None:
    def refuse(call: ServiceCall) -> None:
        raise RuntimeError("charger rejected the command")

    hub.services.register("charging", "start", refuse)

    with pytest.raises(RuntimeError, match="rejected"):
        await hub.services.call("charging", "start")


async def test_register_announces_and_catalog_lists_services(hub: Hub) -> None:
    registered: list[Event] = []
    hub.bus.listen(EVENT_SERVICE_REGISTERED, registered.append)

    hub.services.register("charging", "pause", lambda call: None, description="Pause charging")
    hub.services.register("charging", "resume", lambda call: None, description="Resume")
    hub.services.register("ocpp", "reset", lambda call: None)

    catalog = hub.services.catalog()
    assert catalog["charging"] == {"pause": "Pause charging", "resume": "Resume"}
    assert catalog["ocpp"] == {"reset": ""}
    assert set(catalog) == {"charging", "ocpp", "charger"}  # charger.* comes with the core
    assert [(e.data["domain"], e.data["service"]) for e in registered] == [
        ("charging", "pause"),
        ("charging", "resume"),
        ("ocpp", "reset"),
    ]
