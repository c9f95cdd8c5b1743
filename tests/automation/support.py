"""Test support for automations: a hub on the simulated clock built from an automations.yaml
written to a temporary config dir (so errors have file and line), and services that remember calls.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from hub.automation import get_traces
from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.config import load_configuration
from hub.core import Hub
from hub.plugins import PluginHost
from hub.services import ServiceCall


@dataclass
class Recorder:
    """A real service (`test.<name>`) that keeps each call, for actions to call."""

    calls: list[ServiceCall] = field(default_factory=list)
    fail: bool = False

    def __call__(self, call: ServiceCall) -> dict[str, Any]:
        self.calls.append(call)
        if self.fail:
            raise RuntimeError("the device did not answer")
        return {"ok": True, "n": len(self.calls)}

    @property
    def data(self) -> list[dict[str, Any]]:
        return [dict(call.data) for call in self.calls]


def write_config(folder: Path, automations: str, extra: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "automations.yaml").write_text(textwrap.dedent(automations).lstrip())
    (folder / "configuration.yaml").write_text(
        "hub:\n  time_zone: Europe/Berlin\nautomation: !include automations.yaml\n" + extra
    )


async def start_hub(
    folder: Path,
    clock: SimClock,
    automations: str,
    *,
    extra: str = "",
    setup: Any = None,
    plugins: dict[str, ModuleType] | None = None,
) -> Hub:
    """A started hub whose `automation:` is the given YAML; `setup(hub)` runs before the start
    (to register services and entities the automations use). With `plugins`, the hub is built
    the way `evhub run` builds it (the whole configuration validated, those plugins set up)."""
    write_config(folder, automations, extra)
    if plugins is not None:
        host = PluginHost()
        for name, module in plugins.items():
            host.register(name, module)
        hub = create_hub(folder, clock=clock, host=host)
    else:
        raw, _ = load_configuration(folder)
        config = {"hub": {"time_zone": "Europe/Berlin"}, "automation": raw["automation"]}
        hub = Hub(folder, clock=clock, config=config)
    if setup is not None:
        await setup(hub)
    await hub.start()
    return hub


def record(hub: Hub, name: str = "record", domain: str = "test") -> Recorder:
    recorder = Recorder()
    hub.services.register(domain, name, recorder)
    return recorder


def last_trace(hub: Hub, automation: str) -> dict[str, Any]:
    traces = get_traces(hub, automation)
    assert traces, f"no trace for {automation}"
    return traces[0]
