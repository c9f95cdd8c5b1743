"""Plugin hooks (pluggy hookspecs) and the per-hub PluginHost that loads, sets up, isolates plugins.

Built-in plugins and third-party ones both arrive through the `evhub.plugins` entry-point group.
"""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from hub.bus import EVENT_PLUGIN_FAILED

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

PROJECT = "evhub"
ENTRY_POINT_GROUP = "evhub.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


class HookSpecs:
    """Every hook a plugin may implement. Hooks may be plain or `async def`; the host awaits."""

    @hookspec
    def hub_config_schema(self) -> Mapping[str, Any]:
        """Return {domain: voluptuous schema} for the top-level configuration keys this plugin owns.

        Called once, before any configuration is validated. A plugin whose domain is absent from
        configuration.yaml is loaded but not set up; a plugin that returns nothing is always set up.
        """

    @hookspec
    def hub_setup(self, hub: Hub, config: Mapping[str, Any]) -> Awaitable[None] | None:
        """Start the plugin; `config` is the whole validated configuration (take your block).

        Add entities with `await hub.entities.add(platform, [...])`, listen on `hub.bus`, start
        servers as `hub.create_task(..., background=True)`. Raising marks this plugin failed; the
        hub and the other plugins go on.
        """

    @hookspec
    def hub_teardown(self, hub: Hub) -> Awaitable[None] | None:
        """Stop what hub_setup started (close sockets, flush buffers). Called in reverse order."""

    @hookspec
    def hub_register_services(self, hub: Hub, register: Register) -> None:
        """Call `register(domain, name, handler, schema=None, description="")` per service.

        Called after hub_setup succeeded, so handlers may use what setup built.
        """

    @hookspec
    def hub_register_triggers(self, register: Register) -> None:
        """Call `register(platform, trigger_type)` for each automation trigger platform."""

    @hookspec
    def hub_register_conditions(self, register: Register) -> None:
        """Call `register(name, condition_factory)` for each automation condition."""

    @hookspec
    def hub_register_actions(self, register: Register) -> None:
        """Call `register(name, action_factory)` for each automation action."""

    @hookspec
    def hub_template_functions(self, register: Register) -> None:
        """Call `register(name, function)` to add a global to the template environment."""

    @hookspec
    def hub_web_routes(self, register: Register) -> None:
        """Call `register(method, path, handler, *, roles=..., page=None)` for routes and pages."""

    @hookspec(firstresult=True)
    def hub_authorize(
        self, hub: Hub, id_token: Mapping[str, Any], charger: str, context: Any
    ) -> Any:
        """Decide whether `id_token` ({"id": ..., "type": ...}) may charge on `charger` of `hub`.

        Return an authorization result, or None to let the next plugin decide. The first
        non-None answer wins; with no answer at all the hub denies.
        """

    @hookspec
    def hub_notify_providers(self, register: Register) -> None:
        """Call `register(name, provider)` for each notification channel (log, smtp, ...)."""

    @hookspec
    def hub_payment_providers(self, register: Register) -> None:
        """Call `register(name, provider)` for each payment provider."""

    @hookspec
    def hub_cli_commands(self, register: Register) -> None:
        """Call `register(name, help, configure, run)` to add an `evhub NAME` subcommand.

        `configure(parser)` adds arguments to an argparse parser; `run(args)` returns the exit
        code (it may be async). Commands run without a hub unless they build one themselves.
        """


HOOK_NAMES = tuple(n for n in vars(HookSpecs) if n.startswith("hub_"))


class PluginStatus(enum.StrEnum):
    LOADED = "loaded"  # imported, not configured
    SET_UP = "set_up"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(slots=True)
class PluginRecord:
    name: str
    module: ModuleType | None
    source: str  # "entry point pkg==1.2" / "registered"
    domains: tuple[str, ...] = ()
    status: PluginStatus = PluginStatus.LOADED
    error: str | None = None
    schemas: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "domains": list(self.domains),
            "status": str(self.status),
            "error": self.error,
        }


async def await_me_maybe(value: Any) -> Any:
    """Hooks may be sync or async; the host awaits whatever comes back (datasette's idea)."""
    if inspect.isawaitable(value):
        return await value
    return value


class PluginHost:
    """One pluggy PluginManager per hub; every plugin's hooks are called in isolation."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(HookSpecs)
        self.records: dict[str, PluginRecord] = {}
        self.hub: Hub | None = None
        self._setup_order: list[str] = []

    # --- loading ------------------------------------------------------------------------
    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        for ep in importlib.metadata.entry_points(group=group):
            if ep.name in self.records:
                continue
            dist = f"{ep.dist.name}=={ep.dist.version}" if ep.dist else "?"
            try:
                module = ep.load()
            except Exception as err:
                _LOGGER.exception("plugin %s (%s) failed to import", ep.name, dist)
                self.records[ep.name] = PluginRecord(
                    ep.name, None, f"entry point {dist}", status=PluginStatus.FAILED,
                    error=f"import failed: {err}",
                )  # fmt: skip
                continue
            self.register(ep.name, module, source=f"entry point {dist}")

    def register(self, name: str, plugin: ModuleType | object, source: str = "registered") -> None:
        """Add a plugin object (a module with hookimpls, or any object with them)."""
        if name in self.records:
            raise ValueError(f"plugin {name!r} is registered twice")
        self.pm.register(plugin, name=name)
        module = plugin if isinstance(plugin, ModuleType) else None
        record = PluginRecord(name, module, source)
        self.records[name] = record
        impl = self._impl(name, "hub_config_schema")
        if impl is None:
            return
        try:
            schemas = dict(impl() or {})
        except Exception as err:
            self._fail(record, f"hub_config_schema raised {err!r}", err)
            return
        record.schemas, record.domains = schemas, tuple(schemas)

    def _impl(self, plugin_name: str, hook: str) -> Callable[..., Any] | None:
        """The plugin's implementation of `hook`, called with just the arguments it declares.

        pluggy lets an implementation take a subset of the spec's arguments; calling it directly
        (to isolate plugins from each other) must respect that too.
        """
        plugin = self.pm.get_plugin(plugin_name)
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin is plugin:
                names, function = impl.argnames, impl.function
                return lambda **kw: function(**{k: v for k, v in kw.items() if k in names})
        return None

    def _fail(self, record: PluginRecord, message: str, err: BaseException | None = None) -> None:
        record.status, record.error = PluginStatus.FAILED, message
        _LOGGER.error("plugin %s failed: %s", record.name, message, exc_info=err)
        if self.hub is not None:
            self.hub.bus.fire(EVENT_PLUGIN_FAILED, {"plugin": record.name, "error": message})

    # --- configuration ------------------------------------------------------------------
    def config_schemas(self) -> dict[str, Any]:
        """{domain: schema} over all loaded plugins; a domain claimed twice is an error."""
        schemas: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for record in self.records.values():
            for domain, schema in record.schemas.items():
                if domain in owners:
                    self._fail(record, f"domain {domain!r} is already provided by {owners[domain]}")
                    continue
                owners[domain] = record.name
                schemas[domain] = schema
        return schemas

    def wanted(self, config: Mapping[str, Any]) -> list[PluginRecord]:
        return [
            r
            for r in self.records.values()
            if r.status is PluginStatus.LOADED
            and (not r.domains or any(d in config for d in r.domains))
        ]

    def loaded_names(self) -> list[str]:
        return [n for n, r in self.records.items() if r.status is PluginStatus.SET_UP]

    # --- lifecycle ----------------------------------------------------------------------
    async def setup_all(self, config: Mapping[str, Any]) -> None:
        assert self.hub is not None, "attach the host to a hub first"
        for record in self.wanted(config):
            setup = self._impl(record.name, "hub_setup")
            try:
                if setup is not None:
                    await await_me_maybe(setup(hub=self.hub, config=config))
                services = self._impl(record.name, "hub_register_services")
                if services is not None:
                    await await_me_maybe(
                        services(hub=self.hub, register=self.hub.services.register)
                    )
            except Exception as err:
                self._fail(record, f"setup raised {type(err).__name__}: {err}", err)
                continue
            record.status = PluginStatus.SET_UP
            self._setup_order.append(record.name)
            _LOGGER.info("plugin %s set up (%s)", record.name, record.source)

    async def teardown_all(self) -> None:
        assert self.hub is not None
        for name in reversed(self._setup_order):
            record = self.records[name]
            teardown = self._impl(name, "hub_teardown")
            try:
                if teardown is not None:
                    await await_me_maybe(teardown(hub=self.hub))
            except Exception as err:
                self._fail(record, f"teardown raised {type(err).__name__}: {err}", err)
                continue
            record.status = PluginStatus.STOPPED
        self._setup_order.clear()

    # --- collected registrations ----------------------------------------------------------
    def collect(self, hook: str) -> dict[str, Any]:
        """Run a `register(name, thing)` hook on every live plugin; returns {name: thing}.

        A name registered twice keeps the first and logs the clash; a plugin that raises is
        skipped with its error logged.
        """
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for record in self._live():
            impl = self._impl(record.name, hook)
            if impl is None:
                continue

            def register(name: str, thing: Any, *_: Any, _owner: str = record.name) -> None:
                if name in found:
                    _LOGGER.error(
                        "%s: %r from %s clashes with %s", hook, name, _owner, owners[name]
                    )
                    return
                found[name], owners[name] = thing, _owner

            try:
                impl(register=register)
            except Exception:
                _LOGGER.exception("plugin %s: %s failed", record.name, hook)
        return found

    def collect_calls(
        self, hook: str, *, loaded: bool = False
    ) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        """Like collect, for hooks whose register() takes several arguments (web routes).

        `loaded=True` asks every imported plugin, set up or not (CLI commands run without a hub).
        """
        calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        records = (
            [r for r in self.records.values() if r.status is not PluginStatus.FAILED]
            if loaded
            else self._live()
        )
        for record in records:
            impl = self._impl(record.name, hook)
            if impl is None:
                continue
            try:
                impl(register=lambda *a, _n=record.name, **kw: calls.append((_n, a, kw)))
            except Exception:
                _LOGGER.exception("plugin %s: %s failed", record.name, hook)
        return calls

    async def authorize(self, id_token: Mapping[str, Any], charger: str, context: Any) -> Any:
        """Ask each live plugin in turn; the first non-None answer wins, None means nobody knew."""
        for record in self._live():
            impl = self._impl(record.name, "hub_authorize")
            if impl is None:
                continue
            try:
                answer = await await_me_maybe(
                    impl(hub=self.hub, id_token=id_token, charger=charger, context=context)
                )
            except Exception:
                # An authorizer that crashes must not let a token through: treat it as no answer
                # from that plugin and go on to the next one (default deny at the end).
                _LOGGER.exception("plugin %s: hub_authorize failed", record.name)
                continue
            if answer is not None:
                return answer
        return None

    def _live(self) -> Iterable[PluginRecord]:
        return [self.records[n] for n in self._setup_order]

    def status(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.records.values()]
