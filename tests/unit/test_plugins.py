"""The plugin host: loading through entry points, isolation of failures, hook documentation."""

from __future__ import annotations

import inspect
import logging
import re
import sys
import types
from pathlib import Path

import pytest
import voluptuous as vol

from hub.bus import EVENT_PLUGIN_FAILED
from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import HOOK_NAMES, HookSpecs, PluginHost, PluginStatus, hookimpl

ROOT = Path(__file__).resolve().parents[2]


def make_plugin(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


async def started_hub(tmp_path: Path, host: PluginHost, config: dict) -> Hub:
    hub = Hub(tmp_path, clock=SimClock(), config=config)
    hub.plugins, host.hub = host, hub
    await hub.start()
    return hub


def test_every_hook_is_documented_with_its_arguments() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text()
    sections = dict(re.findall(r"^### `(\w+)`\n(.*?)(?=^### |\Z)", doc, re.S | re.M))
    assert HOOK_NAMES, "no hooks found on HookSpecs"
    for hook in HOOK_NAMES:
        assert hook in sections, f"docs/plugins.md has no section for {hook}"
        params = [p for p in inspect.signature(getattr(HookSpecs, hook)).parameters if p != "self"]
        for param in params:
            assert param in sections[hook], f"docs/plugins.md: {hook} does not mention {param}"


def test_every_hook_has_a_docstring() -> None:
    for hook in HOOK_NAMES:
        assert (getattr(HookSpecs, hook).__doc__ or "").strip(), f"{hook} has no docstring"


async def test_a_plugin_that_fails_in_setup_is_marked_failed_and_the_others_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_setup(hub: Hub, config: dict) -> None:
        raise RuntimeError("device not found")

    async def good_setup(hub: Hub) -> None:  # a subset of the spec's arguments is allowed
        hub.data["good"] = "ready"

    host = PluginHost()
    host.register("broken", make_plugin("broken", hub_setup=broken_setup))
    host.register("good", make_plugin("good", hub_setup=good_setup))
    failures: list[dict] = []
    hub = Hub(tmp_path, clock=SimClock())
    hub.plugins, host.hub = host, hub
    hub.bus.listen(EVENT_PLUGIN_FAILED, lambda e: failures.append(dict(e.data)))
    with caplog.at_level(logging.ERROR):
        await hub.start()

    assert host.records["broken"].status is PluginStatus.FAILED
    assert "device not found" in (host.records["broken"].error or "")
    assert host.records["good"].status is PluginStatus.SET_UP
    assert hub.data["good"] == "ready"
    assert failures == [
        {"plugin": "broken", "error": "setup raised RuntimeError: device not found"}
    ]
    assert "plugin broken failed" in caplog.text
    await hub.stop()


async def test_only_configured_plugins_are_set_up(tmp_path: Path) -> None:
    calls: list[str] = []
    schema = {"meter": vol.Schema({})}
    host = PluginHost()
    host.register(
        "meter",
        make_plugin(
            "meter", hub_config_schema=lambda: schema, hub_setup=lambda: calls.append("meter")
        ),
    )
    host.register("always", make_plugin("always", hub_setup=lambda: calls.append("always")))
    hub = await started_hub(tmp_path, host, {})
    assert calls == ["always"]
    assert host.records["meter"].status is PluginStatus.LOADED
    await hub.stop()


async def test_teardown_runs_in_reverse_order_and_a_failing_one_does_not_stop_the_rest(
    tmp_path: Path,
) -> None:
    order: list[str] = []

    def teardown(name: str, fail: bool = False):
        async def _teardown(hub: Hub) -> None:
            order.append(name)
            if fail:
                raise OSError("socket already closed")

        return _teardown

    host = PluginHost()
    host.register("first", make_plugin("first", hub_teardown=teardown("first")))
    host.register("second", make_plugin("second", hub_teardown=teardown("second", fail=True)))
    hub = await started_hub(tmp_path, host, {})
    await hub.stop()
    assert order == ["second", "first"]
    assert host.records["first"].status is PluginStatus.STOPPED
    assert host.records["second"].status is PluginStatus.FAILED


async def test_services_registered_by_hook_are_callable(tmp_path: Path) -> None:
    def register_services(hub: Hub, register) -> None:
        register("demo", "double", lambda call: call.data["x"] * 2, {vol.Required("x"): int})

    host = PluginHost()
    host.register("demo", make_plugin("demo", hub_register_services=register_services))
    hub = await started_hub(tmp_path, host, {})
    assert await hub.services.call("demo", "double", {"x": 21}) == 42
    await hub.stop()


async def test_authorization_asks_plugins_in_turn_and_a_crash_is_never_an_accept(
    tmp_path: Path,
) -> None:
    def crashing(id_token: dict) -> None:
        raise RuntimeError("database down")

    async def allow_list(id_token: dict, charger: str) -> dict | None:
        if id_token["id"] == "04A1B2C3":
            return {"status": "Accepted", "charger": charger}
        return None

    host = PluginHost()
    host.register("allow", make_plugin("allow", hub_authorize=allow_list))
    host.register("crash", make_plugin("crash", hub_authorize=crashing))
    hub = await started_hub(tmp_path, host, {})
    token = {"id": "04A1B2C3", "type": "ISO14443"}
    assert await host.authorize(token, "charger.bay_1", None) == {
        "status": "Accepted",
        "charger": "charger.bay_1",
    }
    assert (
        await host.authorize({"id": "DEADBEEF", "type": "ISO14443"}, "charger.bay_1", None) is None
    )
    await hub.stop()


async def test_collected_registrations_keep_the_first_of_a_clash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = PluginHost()
    host.register(
        "a", make_plugin("a", hub_template_functions=lambda register: register("twice", len))
    )
    host.register(
        "b", make_plugin("b", hub_template_functions=lambda register: register("twice", str))
    )
    hub = await started_hub(tmp_path, host, {})
    found = host.collect("hub_template_functions")
    assert list(found) == ["twice"]
    assert found["twice"] in (len, str)
    assert "clashes with" in caplog.text
    await hub.stop()


def test_a_domain_claimed_twice_is_refused() -> None:
    host = PluginHost()
    schema = {"ocpp": vol.Schema({})}
    host.register("one", make_plugin("one", hub_config_schema=lambda: schema))
    host.register("two", make_plugin("two", hub_config_schema=lambda: schema))
    assert list(host.config_schemas()) == ["ocpp"]
    assert host.records["two"].status is PluginStatus.FAILED
    assert "already provided by one" in (host.records["two"].error or "")


def test_a_plugin_that_fails_to_import_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real installed distribution (dist-info on sys.path) whose module raises on import.
    (tmp_path / "evhub_broken.py").write_text("raise ImportError('needs libfoo')\n")
    dist = tmp_path / "evhub_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evhub-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[evhub.plugins]\nbroken = evhub_broken\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    host.load_entry_points()
    record = host.records["broken"]
    assert record.status is PluginStatus.FAILED
    assert "needs libfoo" in (record.error or "")
    assert "evhub-broken==0.1" in record.source
    # the built-in plugins still loaded next to it
    assert host.records["system"].status is PluginStatus.LOADED
    sys.modules.pop("evhub_broken", None)


def test_built_in_plugins_arrive_through_the_entry_point_group() -> None:
    host = PluginHost()
    host.load_entry_points()
    assert host.records["system"].source.startswith("entry point evhub==")
    assert "system" in host.config_schemas()
