"""Fixtures for the automation tests: `make_hub(automations_yaml, setup=...)` starts a hub on the
simulated clock from a written automations.yaml and stops it after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.clock import SimClock
from hub.core import CoreState, Hub
from tests.automation.support import start_hub

MakeHub = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def make_hub(tmp_path: Path, clock: SimClock) -> AsyncIterator[MakeHub]:
    hubs: list[Hub] = []

    async def make(automations: str, *, sim: SimClock | None = None, **options: Any) -> Hub:
        folder = tmp_path / f"config{len(hubs)}"
        hub = await start_hub(folder, sim or clock, automations, **options)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        if hub.state is not CoreState.STOPPED:
            await hub.stop()
