"""Built-in `openadr` plugin: utility demand response. An OpenADR 2.0b VEN (openleadr) and generic
HTTP/JSON grid signals become `caps.<node>` signals the smart-charging engine obeys; see
docs/demand_response.md.

    openadr:
      vtn:                                  # omit to use grid signals only
        url: https://vtn.example.com/OpenADR2/Simple/2.0b
        ven_name: depot-17
        cert: certs/ven.crt                 # TLS client cert + message signing (with key, ca_file)
        key: certs/ven.key
        ca_file: certs/ca.crt
        vtn_fingerprint: "8F:2A:..."        # verify the VTN's signed messages
        telemetry: {min_interval: 10, max_interval: 3600}
      node: site                            # where caps go unless an event targets a resource
      opt: in                               # the default answer; openadr.opt_in/opt_out change it
      levels: {1: 70%, 2: 40%, 3: 0%}       # SIMPLE levels: a share of the node's limit, or kW
      lead: 10                              # s: caps begin this early so chargers have obeyed
      grid_signals:
        - {name: flexco, url: "https://...", every: 60, items: events,
           cap_kw: "{{ item.limit_kw }}", start: "{{ item.from }}", end: "{{ item.to }}"}

Services: `openadr.opt_in`, `openadr.opt_out` {event_id}, `openadr.report` {since?, until?}.
Bus event: `demand_response` {event_id, phase, node, cap_kw, level, start, end, signal_name, opt}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import voluptuous as vol

from hub.core import Hub
from hub.plugins import hookimpl
from hub.services import ServiceCall
from hub.validators import aware_datetime as _aware
from plugins.openadr.grid_signal import GridSignal
from plugins.openadr.manager import EVENT_DEMAND_RESPONSE, DemandResponse, Settings
from plugins.openadr.mapping import DEFAULT_LEVELS, MappingConf, parse_rule
from plugins.openadr.model import Opt
from plugins.openadr.store import Journal
from plugins.openadr.ven import Ven

DOMAIN = "openadr"

__all__ = ["CONFIG_SCHEMA", "DOMAIN", "EVENT_DEMAND_RESPONSE"]

_DURATION = re.compile(r"^(?:(\d+)h)?\s*(?:(\d+)min)?\s*(?:(\d+(?:\.\d+)?)s)?$")


def duration(value: Any) -> float:
    """Seconds, as a number or as '1h', '15min', '90s'."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip()) if isinstance(value, str) else None
        if not match or not any(match.groups()):
            raise vol.Invalid(f"expected seconds or a duration like '15min', got {value!r}")
        h, m, s = (float(g or 0) for g in match.groups())
        seconds = (h * 60 + m) * 60 + s
    if seconds < 0:
        raise vol.Invalid("a duration cannot be negative")
    return seconds


def _rule(value: Any) -> Any:
    try:
        return parse_rule(value)
    except ValueError as err:
        raise vol.Invalid(str(err)) from None


def _levels(value: Any) -> dict[int, Any]:
    if not isinstance(value, Mapping):
        raise vol.Invalid("expected a table of level: cap, e.g. {1: 70%, 2: 40%, 3: 0%}")
    table = dict(DEFAULT_LEVELS)
    table.update(vol.Schema({vol.All(vol.Coerce(int), vol.Range(min=0)): _rule})(dict(value)))
    return table


def _check_tls(conf: dict[str, Any]) -> dict[str, Any]:
    if bool(conf.get("cert")) != bool(conf.get("key")):
        raise vol.Invalid("cert and key go together", path=["key" if conf.get("cert") else "cert"])
    if conf.get("cert") and not conf.get("ca_file"):
        raise vol.Invalid("with a client certificate, name the CA that signed the VTN's (ca_file)",
                          path=["ca_file"])  # fmt: skip
    return conf


_NODE = vol.Match(r"^[A-Za-z0-9_-]+$", msg="a node id of site.yaml (or 'site')")
_ENTITY = vol.Match(r"^[a-z0-9_]+\.[a-z0-9_]+$", msg="an entity id like sensor.grid_power")
_OPT = vol.In(("in", "out"), msg="in or out")
_SECONDS = vol.All(duration, vol.Range(min=1))
_KW = vol.All(vol.Coerce(float), vol.Range(min=0))

TELEMETRY_SCHEMA = vol.Schema(
    {
        vol.Optional("resource_id", default="site"): str,
        vol.Optional("node"): _NODE,
        vol.Optional("min_interval", default=10.0): _SECONDS,
        vol.Optional("max_interval", default=3600.0): _SECONDS,
        vol.Optional("report_specifier_id", default="evhub_telemetry"): str,
    }
)

VTN_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("url"): vol.All(str, vol.Match(r"^https?://", msg="an http(s) URL")),
            vol.Required("ven_name"): vol.All(str, vol.Length(min=1)),
            vol.Optional("ven_id"): str,
            vol.Optional("cert"): str,
            vol.Optional("key"): str,
            vol.Optional("passphrase"): str,
            vol.Optional("ca_file"): str,
            vol.Optional("vtn_fingerprint"): str,
            vol.Optional("check_hostname", default=True): bool,
            vol.Optional("disable_signature", default=False): bool,
            vol.Optional("retry", default=60.0): _SECONDS,
            vol.Optional("opt"): _OPT,
            vol.Optional("telemetry", default={}): vol.Any(False, TELEMETRY_SCHEMA),
        }
    ),
    _check_tls,
)

GRID_SIGNAL_SCHEMA = vol.Schema(
    {
        vol.Required("name"): vol.Match(r"^[a-z0-9_]+$", msg="lower case letters, digits and _"),
        vol.Required("url"): vol.All(str, vol.Match(r"^https?://", msg="an http(s) URL")),
        vol.Optional("every", default=60.0): _SECONDS,
        vol.Optional("timeout", default=10.0): vol.All(duration, vol.Range(min=1, max=120)),
        vol.Optional("headers", default={}): {str: str},
        vol.Optional("node"): _NODE,
        vol.Optional("items"): str,
        vol.Optional("cap_kw", default="{{ item.cap_kw }}"): str,
        vol.Optional("start"): str,
        vol.Optional("end"): str,
        vol.Optional("id"): str,
        vol.Optional("level"): str,
        vol.Optional("hold"): _SECONDS,
        vol.Optional("opt"): _OPT,
    }
)

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("vtn"): VTN_SCHEMA,
        vol.Optional("node", default="site"): _NODE,
        vol.Optional("opt", default="in"): _OPT,
        vol.Optional("levels", default=dict): _levels,
        vol.Optional("resources", default={}): {str: _NODE},
        vol.Optional("limits_kw", default={}): {_NODE: _KW},
        vol.Optional("lead", default=10.0): vol.All(duration, vol.Range(max=3600)),
        vol.Optional("ramp_steps", default=4): vol.All(int, vol.Range(min=1, max=60)),
        vol.Optional("tolerance_kw", default=0.0): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("load_entity"): _ENTITY,
        vol.Optional("meters", default={}): {_NODE: _ENTITY},
        vol.Optional("grid_signals", default=[]): [GRID_SIGNAL_SCHEMA],
    }
)


@dataclass
class Plugin:
    dr: DemandResponse
    ven: Ven | None = None
    grid_signals: list[GridSignal] = field(default_factory=list)


def node_limit_kw(hub: Hub, conf: Mapping[str, Any]) -> Callable[[str], float | None]:
    """A node's kW limit for percent caps: `limits_kw`, else its kW rating, else its amps."""

    def limit(node: str) -> float | None:
        if node in conf["limits_kw"]:
            return float(conf["limits_kw"][node])
        if hub.site is None:
            return None
        found = hub.site.root if node == "site" else hub.site.node(node)
        if found.max_power_kw is not None:
            return found.max_power_kw
        amps = [a for a in found.max_current[: hub.site.phases] if a is not None]
        if len(amps) < hub.site.phases:
            return None
        return sum(amps) * hub.site.voltage / 1000

    return limit


def _check_nodes(hub: Hub, conf: Mapping[str, Any]) -> None:
    named = [conf["node"], *conf["resources"].values(), *conf["limits_kw"], *conf["meters"]]
    named += [g["node"] for g in conf["grid_signals"] if g.get("node")]
    telemetry = (conf.get("vtn") or {}).get("telemetry") or {}
    named += [telemetry["node"]] if telemetry.get("node") else []
    for node in named:
        if node == "site":
            continue
        if hub.site is None:
            raise ValueError(f"openadr names node {node!r}, but there is no site tree (site:)")
        hub.site.node(node)  # KeyError names the node


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    conf = config[DOMAIN]
    _check_nodes(hub, conf)
    root = hub.site.root.id if hub.site is not None else "site"
    node = "site" if conf["node"] == root else conf["node"]
    settings = Settings(
        node=node,
        tolerance_kw=conf["tolerance_kw"],
        load_entity=conf.get("load_entity"),
        default_opt=Opt(conf["opt"]),
        meters=conf["meters"],
    )
    dr = DemandResponse(hub, settings, Journal(hub))
    plugin = hub.data[DOMAIN] = Plugin(dr)
    await dr.start()
    mapping = MappingConf(
        node=node,
        levels=conf["levels"],
        resources=conf["resources"],
        lead=timedelta(seconds=conf["lead"]),
        ramp_steps=conf["ramp_steps"],
        limit_kw=node_limit_kw(hub, conf),
    )
    if conf.get("vtn"):
        vtn = dict(conf["vtn"])
        if vtn["telemetry"]:
            vtn["telemetry"] = {"node": None, **vtn["telemetry"]}
        plugin.ven = Ven(hub, dr, vtn, mapping)
        plugin.ven.start()
    for feed in conf["grid_signals"]:
        grid = GridSignal(hub, dr, feed, conf["lead"])
        plugin.grid_signals.append(grid)
        grid.start()


@hookimpl
async def hub_teardown(hub: Hub) -> None:
    plugin: Plugin | None = hub.data.pop(DOMAIN, None)
    if plugin is None:
        return
    if plugin.ven is not None:
        await plugin.ven.stop()
    for grid in plugin.grid_signals:
        await grid.stop()
    plugin.dr.stop()


@hookimpl
def hub_register_services(hub: Hub, register: Callable[..., None]) -> None:
    plugin: Plugin = hub.data[DOMAIN]

    def opt(choice: Opt) -> Callable[[ServiceCall], dict[str, Any]]:
        def handler(call: ServiceCall) -> dict[str, Any]:
            return plugin.dr.set_opt(call.data["event_id"], choice).as_dict()

        return handler

    async def report(call: ServiceCall) -> dict[str, Any]:
        events = await plugin.dr.journal.report(call.data.get("since"), call.data.get("until"))
        return {"events": events}

    target = {vol.Required("event_id"): vol.All(str, vol.Length(min=1))}
    window = {vol.Optional("since"): _aware, vol.Optional("until"): _aware}
    register(
        DOMAIN,
        "opt_in",
        opt(Opt.IN),
        target,
        "Take part in a demand-response event (its cap applies); the VTN is told.",
    )
    register(
        DOMAIN,
        "opt_out",
        opt(Opt.OUT),
        target,
        "Decline a demand-response event (no cap); the VTN is told.",
    )
    register(DOMAIN, "report", report, window,
             "Every event in a window, its opt decisions and the site's compliance.")  # fmt: skip
