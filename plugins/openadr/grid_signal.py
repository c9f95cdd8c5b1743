"""Generic grid signals for aggregators that don't speak OpenADR: poll an HTTP/JSON endpoint on the
hub clock and turn its answer into events through the same cap mechanism.

Two shapes: a list of events (`items` path; `start` given: each item is an event, and the list is
complete, so an item that disappears is cancelled), or one current value (no `start`: the cap
holds for `hold` seconds after each poll that repeats it). Values come from sandboxed jinja2
templates over `item` (one entry), `value` (the whole answer) and `now`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import aiohttp
from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hub.charging.signals import Slot
from hub.clock import Timer
from plugins.openadr.mapping import DrInputError, lead_in
from plugins.openadr.model import DrEvent, Opt

if TYPE_CHECKING:
    from hub.core import Hub
    from plugins.openadr.manager import DemandResponse

_LOGGER = logging.getLogger(__name__)

EVENT_FETCH_FAILED = "grid_signal_fetch_failed"
MAX_ANSWER_BYTES = 1_000_000
_ENV = ImmutableSandboxedEnvironment(autoescape=False)
_FIELDS = ("cap_kw", "start", "end", "id", "level")


def _walk(doc: Any, path: str | None) -> Any:
    for part in (path or "").split(".") if path else ():
        if isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        elif isinstance(doc, Mapping) and part in doc:
            doc = doc[part]
        else:
            raise DrInputError(f"the answer has no {part!r} on the path {path!r}")
    return doc


def _render(template: str | None, context: Mapping[str, Any], what: str) -> str | None:
    if template is None:
        return None
    try:
        text = _ENV.from_string(template).render(**context).strip()
    except TemplateError as err:
        raise DrInputError(f"{what} template: {err}") from None
    return None if text.lower() in ("", "none", "null") else text


def _time(text: str, tz: ZoneInfo, what: str) -> datetime:
    try:
        number = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise DrInputError(f"{what} {text!r} is not an ISO 8601 time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    if not math.isfinite(number):
        raise DrInputError(f"{what} {text!r} is not a time")
    # Epoch seconds, or milliseconds as many JSON APIs send them.
    seconds = number / 1000 if number > 1e11 else number
    return datetime.fromtimestamp(seconds, tz=ZoneInfo("UTC"))


def parse_feed(
    doc: Any, conf: Mapping[str, Any], now: datetime, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """[{id, cap_kw, start, end, level}] from one answer; raises DrInputError naming the field."""
    items = _walk(doc, conf.get("items"))
    if not isinstance(items, list):
        items = [items]
    out = []
    for i, item in enumerate(items):
        context = {"item": item, "value": doc, "now": now}
        where = f"item {i}"
        texts = {f: _render(conf.get(f), context, f"{where} {f}") for f in _FIELDS}
        if texts["cap_kw"] is None:
            continue  # no limit in this entry
        try:
            cap = float(texts["cap_kw"])
        except ValueError:
            raise DrInputError(f"{where} cap_kw {texts['cap_kw']!r} is not a number") from None
        if not math.isfinite(cap) or cap < 0:
            raise DrInputError(f"{where} cap_kw {cap!r} must be 0 or more kW")
        start = _time(texts["start"], tz, f"{where} start") if texts["start"] else None
        end = _time(texts["end"], tz, f"{where} end") if texts["end"] else None
        if start is not None and end is not None and end <= start:
            raise DrInputError(f"{where} ends ({end.isoformat()}) before it starts")
        level = float(texts["level"]) if texts["level"] else None
        out.append({"id": texts["id"], "cap_kw": cap, "start": start, "end": end, "level": level})
    return out


class GridSignal:
    """One configured feed: polled every `every` seconds of hub time."""

    def __init__(self, hub: Hub, dr: DemandResponse, conf: Mapping[str, Any], lead: float) -> None:
        self.hub = hub
        self.dr = dr
        self.conf = conf
        self.name: str = conf["name"]
        self.source = f"grid_signal.{self.name}"
        self.lead = timedelta(seconds=lead)
        self.hold = timedelta(seconds=conf.get("hold") or 3 * conf["every"])
        self.opt = Opt(conf.get("opt") or dr.settings.default_opt)
        self.failures = 0
        self.last_error: str | None = None
        self._current: tuple[str, float] | None = None  # the held value's event and cap
        self._session: aiohttp.ClientSession | None = None
        self._timer: Timer | None = None

    def start(self) -> None:
        self._kick()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._session is not None:
            await self._session.close()

    def _kick(self) -> None:
        self._timer = self.hub.clock.call_later(self.conf["every"], self._kick)
        self.hub.create_task(self.poll(), f"grid signal {self.name}", background=True)

    async def poll(self) -> bool:
        """Fetch once and apply; never raises. A failure keeps the known events in force."""
        try:
            doc = await self._fetch()
            entries = parse_feed(doc, self.conf, self.hub.now(), self.hub.time_zone)
            self._apply(entries)
        except DrInputError as err:
            self._failed(str(err))
            return False
        except Exception as err:
            _LOGGER.exception("grid signal %s: unexpected failure", self.name)
            self._failed(f"{type(err).__name__}: {err}")
            return False
        if self.failures:
            _LOGGER.info("grid signal %s: answering again", self.name)
        self.failures, self.last_error = 0, None
        return True

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        _LOGGER.error("grid signal %s: %s (known events stay in force)", self.name, error)
        self.hub.bus.fire(EVENT_FETCH_FAILED, {"name": self.name, "error": error})

    async def _fetch(self) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "evhub-grid-signal"})
        # The network timeout is real time by nature; the poll schedule runs on the hub clock.
        timeout = aiohttp.ClientTimeout(total=self.conf["timeout"])
        try:
            async with self._session.get(
                self.conf["url"], headers=dict(self.conf["headers"]), timeout=timeout
            ) as resp:
                if resp.status != 200:
                    raise DrInputError(f"HTTP {resp.status} {resp.reason or ''}".strip())
                body = await resp.content.read(MAX_ANSWER_BYTES + 1)
                if len(body) > MAX_ANSWER_BYTES:
                    raise DrInputError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        except TimeoutError:
            raise DrInputError(f"no answer within {self.conf['timeout']:g} s") from None
        except aiohttp.ClientError as err:
            raise DrInputError(f"{type(err).__name__}: {err}") from None
        try:
            return json.loads(body)
        except ValueError as err:
            raise DrInputError(f"the answer is not JSON: {err}") from None

    def _apply(self, entries: list[dict[str, Any]]) -> None:
        now = self.hub.now()
        if not self.conf.get("start"):
            self._hold(entries[0] if entries else None, now)
            return
        ids = []
        for entry in entries:
            start = entry["start"]
            end = entry["end"] or start + self.hold
            event_id = f"{self.source}:{entry['id'] or start.isoformat()}"
            ids.append(event_id)
            if end > now:
                self.dr.upsert(self._event(event_id, entry, start, end))
        self.dr.withdraw_missing(self.source, ids)

    def _hold(self, entry: dict[str, Any] | None, now: datetime) -> None:
        """One current value: extended while it repeats, replaced when it changes."""
        current = self._current
        same = entry is not None and current is not None and current[1] == entry["cap_kw"]
        if same and current is not None and self._in_force(current[0]):
            self.dr.extend(current[0], now + self.hold)
            return
        if current is not None:
            self.dr.cancel(current[0], "the grid signal changed")
            self._current = None
        if entry is not None:
            event_id = f"{self.source}:{now.isoformat()}"
            self.dr.upsert(self._event(event_id, entry, now, now + self.hold))
            self._current = (event_id, entry["cap_kw"])

    def _in_force(self, event_id: str) -> bool:
        event = self.dr.events.get(event_id)
        return event is not None and event.in_force

    def _event(
        self, event_id: str, entry: Mapping[str, Any], start: datetime, end: datetime
    ) -> DrEvent:
        slot = Slot(start, end, entry["cap_kw"])
        return DrEvent(
            event_id=event_id,
            source=self.source,
            node=self.conf.get("node") or self.dr.settings.node,
            signal_name="GRID_SIGNAL",
            signal_type="setpoint",
            start=start,
            end=end,
            slots=(*lead_in([slot], start, self.lead), slot),
            level=entry.get("level"),
            opt=self.opt,
            received_at=self.hub.now(),
        )
