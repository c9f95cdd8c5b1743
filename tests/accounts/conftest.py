"""Fixtures of the accounts tests: hubs started from config dirs, stopped at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.core import CoreState, Hub
from hub.plugins import PluginStatus
from tests.accounts.support import SITE, write_config

StartHub = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def start_hub(clock: SimClock) -> AsyncIterator[StartHub]:
    """Builds and starts hubs from config dirs; stops whatever is still running at the end."""
    hubs: list[Hub] = []

    async def start(config_dir: Path) -> Hub:
        hub = create_hub(config_dir, clock=clock)
        hubs.append(hub)
        await hub.start()
        assert hub.plugins is not None
        assert hub.plugins.records["accounts"].status is PluginStatus.SET_UP
        return hub

    yield start
    for hub in hubs:
        if hub.state is not CoreState.STOPPED:
            await hub.stop()


@pytest.fixture
async def hub(tmp_path: Path, start_hub: StartHub) -> Hub:
    """The seeded directory of tests/accounts/support.py on a site with two panels."""
    return await start_hub(write_config(tmp_path / "config", site=SITE))
