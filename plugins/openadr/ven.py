"""The OpenADR 2.0b VEN: openleadr's `OpenADRClient` registers with the VTN, polls it, answers
events with our opt decision, re-sends a changed decision, and reports the measured load.

openleadr keeps its own real-time timers (polling, report sampling); everything the hub decides
from an event (caps, phases, compliance) runs in `DemandResponse` on the hub clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openleadr import OpenADRClient, objects, utils

from hub.clock import Timer
from plugins.openadr.mapping import SOURCE, DrInputError, MappingConf, from_openadr
from plugins.openadr.model import DrEvent, Opt

if TYPE_CHECKING:
    from hub.core import Hub
    from plugins.openadr.manager import DemandResponse

_LOGGER = logging.getLogger(__name__)
# openleadr sets itself to INFO at import and logs every message it handles; a user's
# `logger: logs: {openleadr: debug}` is applied after this and still wins.
logging.getLogger("openleadr").setLevel(logging.WARNING)

EVENT_REGISTERED = "openadr_registered"
EVENT_REGISTRATION_FAILED = "openadr_registration_failed"


class Ven:
    """One VTN connection; a failed registration is retried on the hub clock."""

    def __init__(
        self, hub: Hub, dr: DemandResponse, conf: Mapping[str, Any], mapping: MappingConf
    ) -> None:
        self.hub = hub
        self.dr = dr
        self.conf = conf
        self.mapping = mapping
        self.default_opt = Opt(conf.get("opt") or dr.settings.default_opt)
        self.client: OpenADRClient | None = None
        self.registered = False
        self.attempts = 0
        self._retry: Timer | None = None
        self._stopping = False
        dr.opt_senders[SOURCE] = self._send_opt

    # --- connection -----------------------------------------------------------------------
    def start(self) -> None:
        self.hub.create_task(self._connect(), "openadr register", background=True)

    async def stop(self) -> None:
        self._stopping = True
        if self._retry is not None:
            self._retry.cancel()
        client, self.client = self.client, None
        if client is not None:
            await _close(client)

    async def _connect(self) -> None:
        self.attempts += 1
        client = self._build()
        try:
            await client.run()
        except asyncio.CancelledError:
            await _close(client)  # the hub stopped mid-registration: leave no open session
            raise
        except Exception as err:
            _LOGGER.error("OpenADR: registration with %s failed: %s", self.conf["url"], err)
        if self._stopping:
            await _close(client)
            return
        if client.registration_id is None:
            await _close(client)
            retry = self.conf["retry"]
            _LOGGER.warning(
                "OpenADR: not registered with %s; trying again in %g s (known events stay in "
                "force)", self.conf["url"], retry,
            )  # fmt: skip
            self.hub.bus.fire(EVENT_REGISTRATION_FAILED, {"url": self.conf["url"]})
            self._retry = self.hub.clock.call_later(retry, self.start)
            return
        self.client, self.registered = client, True
        _LOGGER.info(
            "OpenADR: registered with %s as ven_id %s (poll every %s)",
            self.conf["url"], client.ven_id, client.poll_frequency,
        )  # fmt: skip
        self.hub.bus.fire(EVENT_REGISTERED, {"url": self.conf["url"], "ven_id": client.ven_id})

    def _path(self, key: str) -> str | None:
        value = self.conf.get(key)
        if value is None:
            return None
        path = Path(value)
        if not path.is_absolute() and self.hub.config_dir is not None:
            path = self.hub.config_dir / path
        return str(path)

    def _build(self) -> OpenADRClient:
        cert, key = self._path("cert"), self._path("key")
        client = OpenADRClient(
            ven_name=self.conf["ven_name"],
            vtn_url=self.conf["url"],
            ven_id=self.conf.get("ven_id"),
            cert=cert,
            key=key,
            passphrase=self.conf.get("passphrase"),
            vtn_fingerprint=self.conf.get("vtn_fingerprint"),
            ca_file=self._path("ca_file"),
            check_hostname=self.conf["check_hostname"],
            disable_signature=self.conf["disable_signature"],
            show_fingerprint=False,
            # Its own clean-up judges events by the wall clock; ours are kept on the hub clock.
            events_clean_up_period=3600,
            event_status_log_period=3600,
        )
        if cert and self.attempts == 1:
            fingerprint = utils.certificate_fingerprint(Path(cert).read_text())
            _LOGGER.info("OpenADR: this VEN's certificate fingerprint is %s", fingerprint)
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        client.add_hook("after_parse_xml", self._after_parse)
        telemetry = self.conf.get("telemetry")
        if telemetry:
            client.add_report(
                callback=self._telemetry,
                resource_id=telemetry["resource_id"],
                measurement="REAL_POWER",
                unit="W",
                scale="k",  # kW
                report_specifier_id=telemetry["report_specifier_id"],
                r_id=f"{telemetry['resource_id']}_power",
                sampling_rate=objects.SamplingRate(
                    min_period=timedelta(seconds=telemetry["min_interval"]),
                    max_period=timedelta(seconds=telemetry["max_interval"]),
                    on_change=False,
                ),
                report_duration=timedelta(seconds=telemetry["max_interval"]),
            )
        return client

    # --- events in ------------------------------------------------------------------------
    async def _on_event(self, event: Mapping[str, Any]) -> str:
        """openleadr's on_event / on_update_event: our answer is 'optIn' or 'optOut'."""
        event_id = "?"
        try:
            descriptor = event.get("event_descriptor") or {}
            event_id = str(descriptor.get("event_id", "?"))
            if descriptor.get("event_status") == "cancelled" and event_id in self.dr.events:
                self.dr.cancel(event_id, "cancelled by the VTN")
                return self.dr.events[event_id].opt.openadr
            parsed = from_openadr(event, self.mapping, self.hub.now())
            parsed.opt = self.default_opt
            return self.dr.upsert(parsed).openadr
        except DrInputError as err:
            _LOGGER.error("OpenADR: cannot follow event %s from the VTN, opting out: %s", event_id,
                          err)  # fmt: skip
            self.dr.journal.log(event_id, "rejected", {"error": str(err)})
        except Exception:
            _LOGGER.exception("OpenADR: event %s from the VTN could not be handled", event_id)
        return Opt.OUT.openadr

    def _after_parse(self, message_type: str, payload: Any) -> None:
        """OpenADR 2.0b: every oadrDistributeEvent lists all of a VEN's events, so an event it
        no longer lists was withdrawn by the VTN."""
        if message_type != "oadrDistributeEvent":
            return
        try:
            ids = [str(e["event_descriptor"]["event_id"]) for e in payload.get("events") or []]
        except (AttributeError, KeyError, TypeError) as err:
            _LOGGER.error("OpenADR: malformed oadrDistributeEvent from the VTN: %r", err)
            return
        self.dr.withdraw_missing(SOURCE, ids)

    # --- what we say back -----------------------------------------------------------------
    def _send_opt(self, event: DrEvent) -> None:
        """A changed decision goes out as an unsolicited oadrCreatedEvent (2.0b allows it; the
        openleadr VTN has no EiOpt service), and re-deliveries are answered with it from now."""
        client = self.client
        if client is None:
            _LOGGER.warning(
                "OpenADR: not registered: opt %s for %s is sent with the next delivery",
                event.opt, event.event_id,
            )  # fmt: skip
            return
        if event.event_id in client.responded_events:
            client.responded_events[event.event_id] = event.opt.openadr
        self.hub.create_task(self._created_event(client, event), "openadr opt")

    async def _created_event(self, client: OpenADRClient, event: DrEvent) -> None:
        try:
            await client.created_event(
                request_id=utils.generate_id(),
                event_id=event.event_id,
                opt_type=event.opt.openadr,
                modification_number=event.modification,
            )
        except Exception as err:
            _LOGGER.error("OpenADR: could not send opt %s for %s: %s", event.opt, event.event_id,
                          err)  # fmt: skip

    def _telemetry(self) -> list[tuple[Any, float]]:
        """One TELEMETRY_USAGE sample: the node's measured load in kW, stamped on the hub clock."""
        kw = self.dr.meter(self.conf["telemetry"]["node"] or self.dr.settings.node).kw()
        return [] if kw is None else [(self.hub.now(), round(kw, 3))]


async def _close(client: OpenADRClient) -> None:
    try:
        if client.scheduler.running:
            client.scheduler.shutdown(wait=False)
        if client.report_queue_task is not None:
            client.report_queue_task.cancel()
        if client.client_session is not None:
            await client.client_session.close()
    except Exception as err:  # a half-built client must not stop the hub's shutdown
        _LOGGER.debug("OpenADR: closing the client: %s", err)
