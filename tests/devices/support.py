"""Test support for device plugins: a socat pty pair, a hub running a plugin, and stepping the
simulated clock while real sockets and serial lines do their I/O in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import PluginHost

SOCAT_MISSING = (
    "socat is not installed: `make test` installs it (scripts/install-system-deps.sh); "
    "or run `apt-get install socat`"
)


class SocatPair:
    """Two linked pseudo-terminals; `a` and `b` are stable symlinks that survive a restart."""

    def __init__(self, directory: Path) -> None:
        self.a = str(directory / "ttyA")
        self.b = str(directory / "ttyB")
        self.ptys: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            "socat", "-d", "-d",
            f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert self.proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stderr, selectors.EVENT_READ)
        deadline, text = time.monotonic() + 10, b""
        # socat prints "PTY is /dev/pts/N" twice, then "starting data transfer loop".
        while b"starting data transfer loop" not in text:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"socat did not start: {text.decode(errors='replace')}")
            if sel.select(timeout=0.2):
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                text += chunk
        sel.close()
        self.ptys = re.findall(r"PTY is (\S+)", text.decode())
        assert len(self.ptys) == 2 and os.path.exists(self.a) and os.path.exists(self.b)

    def stop(self) -> None:
        """Pull the cable: both ends vanish."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None


@pytest.fixture
def socat_pair(tmp_path: Path) -> Any:
    if shutil.which("socat") is None:
        pytest.skip(SOCAT_MISSING)
    pair = SocatPair(tmp_path)
    pair.start()
    yield pair
    pair.stop()


@contextlib.asynccontextmanager
async def plugin_hub(
    tmp_path: Path,
    clock: SimClock,
    domain: str,
    module: ModuleType,
    conf: dict[str, Any],
    **extra: Any,
) -> AsyncIterator[Hub]:
    """A started hub with one plugin set up from a validated configuration block."""
    host = PluginHost()
    host.register(domain, module)
    config = {domain: module.CONFIG_SCHEMA(conf), **extra}
    hub = Hub(tmp_path / "config", clock=clock, config=config)
    hub.plugins, host.hub = host, hub
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def advance_until(
    clock: SimClock,
    predicate: Callable[[], bool],
    settle: Callable[[], Awaitable[None]],
    *,
    step: float = 0.5,
    limit: float = 300.0,
    what: str = "condition",
) -> float:
    """Move hub time in small steps, letting real I/O finish after each, until `predicate`.

    Returns the hub seconds it took; fails after `limit` hub seconds.
    """
    elapsed = 0.0
    await settle()
    while not predicate():
        if elapsed >= limit:
            raise AssertionError(f"{what} not reached within {limit:g} s of hub time")
        await clock.advance(step)
        elapsed += step
        await settle()
    return elapsed


async def wait_event(event: asyncio.Event, timeout: float = 2.0) -> None:
    """Real-time, bounded: a serial answer takes a few ms."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
