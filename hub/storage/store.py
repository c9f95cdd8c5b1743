"""Small JSON documents a part of the hub keeps in `<config>/.storage/` (registries, approvals).

Writes are atomic (temp file, fsync, rename), debounced on the hub clock, and flushed at stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """Snapshots may hold frozen dataclasses (immutable, so safe to encode in a thread)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot store {type(value).__name__}")


class JsonStore:
    """`load()` once, then `schedule_save(producer)` whenever the data changed."""

    def __init__(self, hub: Hub, name: str, version: int = 1, delay: float = 2.0) -> None:
        self._hub = hub
        self.path = hub.config_dir / ".storage" / f"{name}.json" if hub.config_dir else None
        self.version = version
        self.delay = delay
        self._producer: Callable[[], Any] | None = None
        self._timer: Timer | None = None
        self._lock = asyncio.Lock()

    def load(self) -> Any:
        """The stored data, or None when there is none; a damaged file is set aside, not fatal."""
        if self.path is None or not self.path.exists():
            return None
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return raw["data"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            self.set_aside(err)
            return None

    def set_aside(self, why: object) -> None:
        """The file cannot be used: keep it as .corrupt for a human, and start empty."""
        if self.path is not None and self.path.exists():
            _LOGGER.error("%s unreadable (%s); starting empty, kept as .corrupt", self.path, why)
            self.path.replace(self.path.with_suffix(".corrupt"))

    def schedule_save(self, producer: Callable[[], Any]) -> None:
        self._producer = producer
        if self.path is None or self._timer is not None:
            return

        def fire() -> None:
            self._timer = None
            self._hub.create_task(self._save_async(), f"save {self.path}")

        self._timer = self._hub.clock.call_later(self.delay, fire)

    async def _save_async(self) -> None:
        # The producer takes a snapshot on the loop; encoding a large document (10,000 entities)
        # takes tens of ms and happens in a thread, off the loop.
        if self._producer is None:
            return
        snapshot = self._producer()
        # One write at a time: two overlapping writes would race on the same temporary file
        # (a simulated clock fires many saves at once), and the later snapshot must land last.
        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(None, self._encode_write, snapshot)

    def _encode_write(self, snapshot: Any) -> None:
        self._write(self._encode(snapshot))

    def _encode(self, snapshot: Any) -> str:
        document = {"version": self.version, "data": snapshot}
        return json.dumps(document, indent=1, default=_plain)

    def _serialise(self) -> str | None:
        return None if self._producer is None else self._encode(self._producer())

    def _write(self, text: str) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def flush(self) -> None:
        """Write now, synchronously (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        text = self._serialise()
        if text is not None and self.path is not None:
            self._write(text)
