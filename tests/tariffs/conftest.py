"""Fixtures for the tariffs tests: the local feed server and hubs that are always stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.clock import SimClock
from hub.core import CoreState, Hub
from tests.tariffs.support import FeedServer, start_hub, write_config

MakeHub = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    feed = FeedServer()
    await feed.start()
    yield feed
    await feed.stop()


@pytest.fixture
async def make_hub(tmp_path: Path) -> AsyncIterator[MakeHub]:
    """make_hub(config, clock) -> a started hub from `config` written to configuration.yaml."""
    hubs: list[Hub] = []

    async def make(config: dict[str, Any], clock: SimClock, name: str = "config") -> Hub:
        hub = await start_hub(write_config(tmp_path / name, config), clock)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        if hub.state is not CoreState.STOPPED:
            await hub.stop()
