"""A depot for the browser: the hub (real clock) with its OCPP server, simulated chargers whose cars
arrive at once, smart charging and the web server on loopback; and Debian's Chromium via Playwright.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from hub.bootstrap import create_hub
from hub.core import Hub

CHARGER_PASSWORD = "e2e-charger-password-1"
CHARGERS = 3
# When set (scripts/screenshots.py sets it), the tests save their screenshots in this folder.
SCREENSHOTS = os.environ.get("EVHUB_SCREENSHOTS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Depot:
    hub: Hub
    url: str

    def shot(self, name: str) -> str | None:
        """Where to save a screenshot, or None when nobody asked for screenshots."""
        if not SCREENSHOTS:
            return None
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        return str(Path(SCREENSHOTS) / f"{name}.png")


def depot_config(http_port: int, ocpp_port: int) -> dict[str, object]:
    ids = [f"bay_{n:02d}" for n in range(1, CHARGERS + 1)]
    return {
        "hub": {"name": "Riverside depot", "time_zone": "Europe/Berlin", "currency": "EUR"},
        "http": {"host": "127.0.0.1", "port": http_port},
        "ocpp": {"host": "127.0.0.1", "port": ocpp_port, "ping_interval": 0,
                 "chargers": [{"id": i, "password": CHARGER_PASSWORD} for i in ids]},
        "allowlist": {"tokens": [{"id": "04A1B2C3", "name": "Van 17"},
                                 {"id": "04B2C3D4", "name": "Van 21"}]},
        "simulator": {
            "url": f"ws://127.0.0.1:{ocpp_port}/ocpp", "meter_interval": 2, "seed": 3,
            "id_tags": ["04A1B2C3", "04B2C3D4"],
            "arrivals": {"first_within": 2, "dwell": [3600, 3600], "gap": [3600, 3600],
                         "soc": [20, 40]},
            "chargers": [{"id": "bay_{n:02d}", "count": CHARGERS, "ocpp": "1.6", "connectors": 1,
                          "max_current": 16, "password": CHARGER_PASSWORD}],
        },
        "site": {
            "id": "depot", "name": "Riverside depot", "max_current": 63,
            "panels": [{"id": "panel_a", "name": "Panel A", "max_current": 40, "circuits": [
                {"id": "row_1", "name": "Row 1", "max_current": 32, "chargers": [
                    {"entity": f"charger.{i}_1", "phases": 3, "max_current": 16} for i in ids]},
            ]}],
        },
        "tariffs": [{"name": "grid_import", "source": {"tou": {"periods": [
            {"name": "peak", "days": ["weekday"], "start": "08:00", "end": "20:00",
             "price": 0.34},
            {"name": "off_peak", "price": 0.22}]}}}],
        "smart_charging": {"interval": 2, "plan": False, "tariff": "grid_import"},
    }  # fmt: skip


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def depot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Depot]:
    config_dir = tmp_path_factory.mktemp("depot")
    http_port, ocpp_port = _free_port(), _free_port()
    (config_dir / "configuration.yaml").write_text(
        yaml.safe_dump(depot_config(http_port, ocpp_port))
    )
    hub = create_hub(config_dir)
    await hub.start()
    assert hub.http is not None and hub.http.port == http_port, "the web server did not start"
    try:
        yield Depot(hub, hub.http.url)
    finally:
        await hub.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[object]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (make system-deps)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        chromium = await p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()
