"""The `evhub` command as a user runs it: check a configuration, run and stop on a signal."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVHUB = [sys.executable, "-m", "hub.cli"]


def evhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EVHUB, *args], capture_output=True, text=True, check=False)


def test_version() -> None:
    result = evhub("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("evhub 0.")


@pytest.mark.parametrize("config", ["config", "config/demo"])
def test_shipped_configurations_are_valid(config: str) -> None:
    result = evhub("check-config", "-c", str(ROOT / config))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_wrong_key_exits_1_naming_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text(
        "hub:\n  name: Depot\nrecorder:\n  purge_keep_dayz: 3\nlogger:\n  default: loud\n"
    )
    result = evhub("check-config", "-c", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("configuration.yaml:4: recorder.purge_keep_dayz:") for line in lines
    ), lines
    assert any(line.startswith("configuration.yaml:6: logger.default:") for line in lines), lines


def test_run_refuses_an_invalid_configuration(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text("nonsense_domain:\n  x: 1\n")
    result = evhub("run", "-c", str(tmp_path))
    assert result.returncode == 1
    assert "configuration.yaml:1: nonsense_domain" in result.stderr


async def _run_until_running(config_dir: Path) -> tuple[asyncio.subprocess.Process, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        *EVHUB, "run", "-c", str(config_dir), stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    seen: list[str] = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, f"hub exited before running: {seen}"
        seen.append(line)
        if " running: " in line:
            return proc, seen


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_run_starts_and_stops_cleanly_on_a_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    shutil.copytree(ROOT / "config" / "demo", tmp_path / "demo")
    proc, seen = await _run_until_running(tmp_path / "demo")
    assert any("plugin system set up" in line for line in seen), seen
    sent = time.monotonic()
    proc.send_signal(signum)
    assert proc.stderr is not None
    rest = (await asyncio.wait_for(proc.stderr.read(), 10)).decode()
    rc = await proc.wait()
    elapsed = time.monotonic() - sent
    assert rc == 0, rest
    assert elapsed < 5.0
    assert "stopped" in rest
    assert "Traceback" not in rest
    assert (tmp_path / "demo" / "evhub.db").exists()
    assert (tmp_path / "demo" / ".storage" / "entity_registry.json").exists()
