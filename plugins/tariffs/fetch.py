"""One configured tariff at run time: fetch or expand its prices, publish them as `prices.<name>`,
keep the last good ones when a fetch fails (stale + alert), and refresh on the hub clock.

Retries are timers on the hub clock (backoff, then every `retry` seconds while tomorrow's prices
are missing), so a simulated day exercises the whole schedule in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp

from hub.charging.signals import SignalStore, TimeSeries
from hub.clock import Timer
from plugins.tariffs import prices
from plugins.tariffs.entity import TariffEntity
from plugins.tariffs.feeds import FeedError
from plugins.tariffs.providers import PROVIDERS, Request, Window, secret_values
from plugins.tariffs.static import STATIC_SOURCES, load_rules
from plugins.tariffs.tou import DemandCharge, TouRules, demand_windows, expand

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

EVENT_FETCH_FAILED = "tariff_fetch_failed"
EVENT_FETCH_RECOVERED = "tariff_fetch_recovered"
MAX_ANSWER_BYTES = 4_000_000
TOU_HORIZON = timedelta(hours=48)
HISTORY = timedelta(days=1)  # published series keep a day of the past (today's statistics)


class Http:
    """One aiohttp session for every feed of a hub, opened on first use."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, request: Request, timeout: float) -> bytes | None:
        """The answer's body; None for 204 No Content (nothing published yet)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "evhub-tariffs"})
        # A network timeout is real time by nature (the other end is real), unlike the retry
        # schedule, which runs on the hub clock.
        limit = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._session.request(
                request.method,
                request.url,
                params=dict(request.params),
                headers=dict(request.headers),
                json=request.json,
                timeout=limit,
            ) as resp:
                if resp.status == 204:
                    return None
                if resp.status != 200:
                    raise FeedError(f"HTTP {resp.status} {resp.reason or ''}".strip())
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise FeedError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise FeedError(f"no answer within {timeout:g} s") from None
        except aiohttp.ClientError as err:
            raise FeedError(f"{type(err).__name__}: {err}") from None
        return b"".join(chunks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Tariff:
    """A tariff's prices, status and schedule; its entity reads from here."""

    def __init__(self, hub: Hub, conf: Mapping[str, Any], http: Http) -> None:
        self.hub, self.http = hub, http
        self.name: str = conf["name"]
        self.kind: str = conf["kind"]
        self.signal = f"prices.{self.name}"
        self.source_key, self.source_conf = next(iter(conf["source"].items()))
        self.provider = PROVIDERS.get(self.source_key)
        self.currency: str = conf.get("currency") or self._source_currency() or hub.currency
        self.unit = f"{self.currency}/kWh"
        self.adjustments = {k: conf[k] for k in ("markup", "vat", "fixed")}
        self.refresh_conf: Mapping[str, Any] = conf.get("refresh") or {}
        self.rules: TouRules | None = None
        self.description = self.source_key
        self._secrets: list[str] = []
        if self.provider is not None:
            self.description = self.provider.describe(self.source_conf) or self.source_key
            self._secrets = secret_values(self.provider, self.source_conf)
        self._own_charges = TouRules(
            (),
            {},
            demand_charges=tuple(
                DemandCharge.from_config(c, i) for i, c in enumerate(conf["demand_charges"])
            ),
        )
        self._charge_attrs: list[dict[str, Any]] = []
        self.series: TimeSeries | None = None
        self.stale = False
        self.last_error: str | None = None
        self.last_success: datetime | None = None
        self.failures = 0
        self.entity = TariffEntity(self)
        self._timers: dict[str, Timer] = {}
        self._task: asyncio.Task[Any] | None = None
        self._lock = asyncio.Lock()

    def _source_currency(self) -> str | None:
        if self.provider is None:
            return None
        return self.provider.currency or self.source_conf.get("currency")

    @property
    def is_feed(self) -> bool:
        return self.source_key not in STATIC_SOURCES

    # --- set-up and tear-down ------------------------------------------------------------------
    def load(self) -> None:
        """Read static rules (files relative to the config dir); raises ConfigError."""
        if not self.is_feed:
            self.rules, self.description = load_rules(
                {self.source_key: self.source_conf}, self.hub.config_dir
            )
            field = "export_price" if self.kind == "export" else "price"
            if not self.rules.has(field):
                raise ValueError(f"tariff {self.name}: kind {self.kind} but no period has {field}")

    def start(self) -> None:
        """Publish static prices now; a feed's first fetch runs as a task."""
        if self.is_feed:
            self._kick("start")
        else:
            self._publish(self._expand())
        self._schedule_regular()

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.entity.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --- refreshing ----------------------------------------------------------------------------
    async def refresh(self) -> dict[str, Any]:
        """One attempt now; never raises. {"ok", "error", "slots"} for the service's caller."""
        async with self._lock:
            try:
                series = await self._fetch() if self.is_feed else self._expand()
            except Exception as err:
                self._failed(err)
            else:
                self._publish(series)
            if self.is_feed:
                self._schedule_retry()
            return {
                "ok": not self.stale,
                "error": self.last_error,
                "slots": 0 if self.series is None else len(self.series),
            }

    def _kick(self, reason: str) -> None:
        if self._task is not None and not self._task.done():
            return  # an attempt is running; it schedules what follows
        self._task = self.hub.create_task(self.refresh(), f"tariffs.{self.name}.{reason}")

    def _expand(self) -> TimeSeries:
        assert self.rules is not None
        tz = self.hub.time_zone
        window = Window.around(self.hub.now(), tz, days=1)
        horizon = Window.around(self.hub.now() + TOU_HORIZON, tz, days=1).end
        field = "export_price" if self.kind == "export" else "price"
        series = expand(
            self.rules,
            window.start,
            horizon,
            tz,
            field=field,
            unit=self.unit,
            source=self.description,
        )
        return prices.adjust(series, **self.adjustments)

    async def _fetch(self) -> TimeSeries:
        assert self.provider is not None
        tz = self.hub.time_zone
        timeout = float(self.refresh_conf.get("timeout", 30))
        merged: TimeSeries | None = None
        for request in self.provider.requests(self.source_conf, Window.around(self.hub.now(), tz)):
            body = await self.http.fetch(request, timeout)
            if body is None:
                continue
            part = self.provider.parse(body, self.source_conf, tz, self.unit)
            if part.unit != self.unit:
                raise FeedError(f"the answer is in {part.unit}, the tariff in {self.unit}")
            merged = part if merged is None else merged.merge(part)
        if merged is None or not len(merged):
            raise FeedError("no prices published yet")
        return prices.adjust(merged, **self.adjustments)

    def _publish(self, series: TimeSeries) -> None:
        now = self.hub.now()
        if self.is_feed and self.series is not None:
            series = self.series.merge(series)  # new prices win; old ones fill what is missing
        keep_from = now - HISTORY
        kept = [s for s in series if s.end > keep_from]
        self.series = TimeSeries(kept, unit=self.unit, source=self.description)
        self.last_success = now
        if self.failures:
            _LOGGER.info(
                "tariff %s: %s answers again after %d failures",
                self.name,
                self.description,
                self.failures,
            )
            self.hub.bus.fire(
                EVENT_FETCH_RECOVERED,
                {
                    "tariff": self.name,
                    "entity_id": self.entity.entity_id,
                    "failures": self.failures,
                },
            )
        self.failures, self.stale, self.last_error = 0, False, None
        self._charge_attrs = self._demand_charges()
        SignalStore.of(self.hub).publish(self.signal, self.series)
        self.entity.refresh()

    def _failed(self, err: BaseException) -> None:
        text = str(err) if isinstance(err, FeedError) else f"{type(err).__name__}: {err}"
        message = self._redact(text)
        self.failures += 1
        self.stale, self.last_error = True, message
        until = None if self.series is None else self.series.end
        if self.failures == 1:  # one log line per failure streak: the alert
            _LOGGER.warning(
                "tariff %s: fetching prices from %s failed: %s; keeping the last prices (known "
                "until %s) and retrying",
                self.name,
                self.description,
                message,
                until.isoformat() if until else "never",
            )
        else:
            _LOGGER.debug("tariff %s: attempt %d failed: %s", self.name, self.failures, message)
        self.hub.bus.fire(
            EVENT_FETCH_FAILED,
            {
                "tariff": self.name,
                "entity_id": self.entity.entity_id,
                "source": self.description,
                "error": message,
                "failures": self.failures,
                "prices_until": None if until is None else until.isoformat(),
            },
        )
        self.entity.refresh()

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # --- schedule ------------------------------------------------------------------------------
    def _set_timer(self, key: str, when: datetime | None, callback: Any) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        if when is not None:
            self._timers[key] = self.hub.clock.call_at(when, callback)

    def _plan(self) -> tuple[tuple[int, ...], float | None]:
        """(daily local times in minutes, interval in seconds) of the regular refreshes: the
        configured ones, else the provider's; static rules are re-expanded at midnight."""
        if self.provider is None:
            return (0,), None
        if "at" in self.refresh_conf or "every" in self.refresh_conf:
            return tuple(sorted(self.refresh_conf.get("at", ()))), self.refresh_conf.get("every")
        return self.provider.default_at, self.provider.default_every

    def _schedule_regular(self) -> None:
        now, tz = self.hub.now(), self.hub.time_zone
        at, every = self._plan()
        candidates = [] if every is None else [now + timedelta(seconds=every)]
        today = now.astimezone(tz).date()
        for day in (today, today + timedelta(days=1)):
            for minutes in at:
                midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz)
                # wall-clock arithmetic: 13:15 stays 13:15 on the days clocks change
                local = midnight + timedelta(minutes=minutes)
                if local > now:
                    candidates.append(local)
        self._set_timer("regular", min(candidates), self._regular_due)

    def _regular_due(self) -> None:
        self._timers.pop("regular", None)
        self._kick("scheduled")
        self._schedule_regular()

    def _schedule_retry(self) -> None:
        """After a failure: back off (doubling up to `retry`). After a success in the afternoon
        with tomorrow's prices still missing: try again every `retry` seconds."""
        retry = float(self.refresh_conf.get("retry", 900))
        delay: float | None = None
        if self.stale:
            backoff = float(self.refresh_conf.get("backoff", 60))
            delay = min(backoff * 2 ** min(self.failures - 1, 20), retry)
        elif self._tomorrow_missing():
            delay = retry
        when = None if delay is None else self.hub.now() + timedelta(seconds=delay)
        self._set_timer("retry", when, self._retry_due)

    def _retry_due(self) -> None:
        self._timers.pop("retry", None)
        self._kick("retry")

    def _tomorrow_missing(self) -> bool:
        at, _ = self._plan()
        if not at or self.series is None:
            return False
        local = self.hub.now_local()
        if not self.is_feed or local.hour * 60 + local.minute < at[0]:
            return False  # before the first daily refresh nobody publishes tomorrow yet
        end = Window.around(self.hub.now(), self.hub.time_zone).end
        return self.series.end is None or self.series.end < end

    # --- demand charges ------------------------------------------------------------------------
    def _demand_charges(self) -> list[dict[str, Any]]:
        now, tz = self.hub.now(), self.hub.time_zone
        window = Window.around(now, tz)
        end = max(window.end, self.series.end if self.series and self.series.end else now)
        sets: list[TouRules] = [self._own_charges]
        if self.rules is not None and self.kind == "import":
            sets.insert(0, self.rules)  # an export tariff does not bill demand
        out = []
        for rules in sets:
            for charge in rules.demand_charges:
                described = charge.describe() | {
                    "currency": self.currency,
                    "unit": f"{self.currency}/kW",
                    "time_zone": str(rules.zone(tz)),
                    "windows": None,
                }
                if not charge.always:
                    spans = demand_windows(rules, charge, window.start, end, tz)
                    described["windows"] = [[a.isoformat(), b.isoformat()] for a, b in spans]
                out.append(described)
        return out

    def demand_charge_attributes(self) -> list[dict[str, Any]]:
        return self._charge_attrs
