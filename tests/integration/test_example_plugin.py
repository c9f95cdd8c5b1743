"""A third-party plugin, installed from its own distribution, loads through its entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.plugins import PluginStatus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "evhub-hello-plugin"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-installs the example into a private target folder (the venv stays untouched)."""
    target = tmp_path_factory.mktemp("site-packages")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(EXAMPLE)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert (target / "evhub_hello").is_dir()
    assert list(target.glob("evhub_hello-1.0.0.dist-info"))
    return target


async def test_installed_plugin_is_configured_set_up_and_serves(
    installed_example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(installed_example))
    (tmp_path / "configuration.yaml").write_text("hello:\n  greeting: Moin\n")
    hub = create_hub(tmp_path, clock=SimClock())
    assert hub.plugins is not None
    record = hub.plugins.records["hello"]
    assert record.source == "entry point evhub-hello==1.0.0"
    await hub.start()
    try:
        assert record.status is PluginStatus.SET_UP
        assert hub.states.get("sensor.greeting").state == "Moin"
        assert await hub.services.call("hello", "greet", {"name": "depot"}) == "Moin, depot!"
        assert hub.states.get("sensor.greeting").attributes["greeted"] == 1
        shout = hub.plugins.collect("hub_template_functions")["shout"]
        assert shout("charge") == "CHARGE!"
    finally:
        await hub.stop()


def test_check_config_validates_the_plugins_block_with_its_schema(
    installed_example: Path, tmp_path: Path
) -> None:
    (tmp_path / "configuration.yaml").write_text("hello:\n  greeting: 42\n  colour: blue\n")
    env = {"PYTHONPATH": str(installed_example), "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "check-config", "-c", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "configuration.yaml:2: hello.greeting:" in result.stdout
    assert "configuration.yaml:3: hello.colour:" in result.stdout
