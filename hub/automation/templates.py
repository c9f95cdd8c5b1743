"""Sandboxed jinja2 templates for automations, notifications and service data (Home Assistant's
model): rendered on the hub's clock and states, with limits, and re-rendered only on what they read.

    >>> Template("{{ 2 * 3 }} kW").render()
    '6 kW'
    >>> Template("{{ [1, 2] + [3] }}").render()
    [1, 2, 3]

An unknown variable renders empty, a missing attribute or key is an error (see `_Undefined`);
docs/templates.md has the functions, limits and tracking.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from ast import literal_eval
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jinja2
import voluptuous as vol
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from hub.automation import template_functions as fn
from hub.automation.site_functions import site_headroom
from hub.automation.template_functions import LimitExceeded, RenderScope
from hub.automation.template_functions import pass_hub as pass_hub  # plugins import it from here
from hub.automation.template_functions import read_state as read_state
from hub.bus import EVENT_STATE_CHANGED, Event

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

MAX_OUTPUT = 256 * 1024  # characters a render may produce (and a string or list may grow to)
MAX_RANGE = 10_000  # items in one range()
MAX_EXPONENT = 1_000  # int ** int beyond this would take the loop for minutes
_ITER = "_evhub_counted"  # the filter every for-loop's iterable is wrapped in (step budget)
_MARKERS = ("{{", "{%", "{#")
_IS_NUMERIC = re.compile(r"^[+-]?(?!0\d)\d*(?:\.\d*)?$")
_PERCENT_WIDTH = re.compile(r"%[-+ #0]*(\d+|\*)?(?:\.(\d+|\*))?")
_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}]*?(\d+)")
_NESTED_FORMAT = re.compile(r"\{[^{}]*:[^{}]*\{")
_DATA_KEY = "template_environment"
Variables = Mapping[str, Any] | None


class TemplateError(Exception):
    """A template failed to compile or render; says what failed, in which template and line."""

    def __init__(self, message: str, source: str = "", line: int | None = None) -> None:
        snippet = source if len(source) <= 200 else source[:197] + "..."
        where = f" in template {snippet!r}" if source else ""
        where += f" (line {line})" if line is not None else ""
        super().__init__(f"{message}{where}")
        self.message, self.source, self.line = message, source, line


def is_template(value: str) -> bool:
    return isinstance(value, str) and any(marker in value for marker in _MARKERS)


# --- the sandbox ---------------------------------------------------------------------------------
class _Undefined(jinja2.Undefined):
    """An unknown variable prints as nothing; printing a missing attribute or key is an error."""

    __slots__ = ()

    def __str__(self) -> str:
        if self._undefined_obj is missing:
            return ""
        return self._fail_with_undefined_error()  # type: ignore[no-any-return]


def _range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise LimitExceeded(f"range of {len(rng)} items; the limit is {MAX_RANGE}")
    return rng


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        fn.step()
        yield item


def _check_ints(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_OUTPUT:
            raise LimitExceeded(f"a size of {arg} is over the limit of {MAX_OUTPUT}")


def _check_percent(text: str) -> None:
    for width, precision in _PERCENT_WIDTH.findall(text):
        if "*" in (width, precision):
            raise LimitExceeded("'*' widths are not allowed in templates")
        _check_ints(int(n) for n in (width, precision) if n)


def _bounded(filter_function: Callable[..., Any]) -> Callable[..., Any]:
    """A jinja filter whose size arguments (center width, batch size...) are capped."""

    @functools.wraps(filter_function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_ints((*args, *kwargs.values()))
        return filter_function(*args, **kwargs)

    return bounded


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_percent(str(value))
    return str(value) % (kwargs or args)


class _Environment(ImmutableSandboxedEnvironment):
    """One per hub: functions bound to it, compiled templates cached by source."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, hub: Hub | None) -> None:
        super().__init__(undefined=_Undefined, autoescape=False, extensions=["jinja2.ext.do"])
        self.hub = hub
        self.plugins: tuple[str, ...] = ()
        # Compiling is the slow part of a render: each distinct text is compiled once.
        self.compile_source = functools.lru_cache(maxsize=1024)(self.from_string)
        self.globals["range"] = _range
        self.globals["states"] = fn.AllStates(hub)
        self.filters[_ITER] = _counted
        for name in ("center", "indent", "batch", "slice", "wordwrap", "truncate"):
            self.filters[name] = _bounded(self.filters[name])
        self.filters["format"] = _format_filter
        for name, function, kinds in fn.BUILTINS:
            self.add(name, function, kinds)
        self.add("site_headroom", site_headroom, "global")
        self.builtin_names = {*self.globals, *self.filters, *self.tests}
        if hub is not None and hub.plugins is not None:
            self._add_plugin_functions(hub)

    def add(self, name: str, function: Callable[..., Any], kinds: str | Iterable[str]) -> None:
        if getattr(function, "pass_hub", False):
            function = functools.partial(function, self.hub)
        for kind in [kinds] if isinstance(kinds, str) else kinds:
            table = {"global": self.globals, "filter": self.filters, "test": self.tests}.get(kind)
            if table is None:
                raise ValueError(f"template function kind {kind!r}: use global, filter or test")
            table[name] = function

    def _add_plugin_functions(self, hub: Hub) -> None:
        assert hub.plugins is not None
        owners: dict[str, str] = {}
        for plugin, args, kwargs in hub.plugins.collect_calls("hub_template_functions"):
            try:
                name, function, *rest = args
                kinds = kwargs.get("kind", rest[0] if rest else "global")
                if name in self.builtin_names or name in owners:
                    raise ValueError(f"{name!r} is provided by {owners.get(name, 'the core')}")
                self.add(name, function, kinds)
                owners[name] = plugin
            except Exception as err:
                _LOGGER.warning("plugin %s: template function not added: %s", plugin, err)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Every for-loop's iterable goes through a counting filter, so a nest of loops that would
        # run for hours stops at the step budget instead. (`_parse` is jinja's parse-to-AST hook.)
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            if loop.recursive:
                raise jinja2.TemplateSyntaxError(
                    "recursive loops are not allowed", loop.lineno, name, filename
                )
            loop.iter = nodes.Filter(loop.iter, _ITER, [], [], None, None, lineno=loop.lineno)
        return tree

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        fn.step()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | list | tuple | bytes):
            _check_ints((*args, *kwargs.values()))
            if getattr(__obj, "__name__", "") == "replace" and len(args) >= 2:
                grows = (owner.count(str(args[0])) or 1) * len(str(args[1]))
                _check_ints([len(owner) + grows])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)  # jinja's sandboxed str.format
        if wrapped is None:
            return None
        text = str(value.__self__)
        _check_ints(int(n) for n in _FORMAT_WIDTH.findall(text))
        nested = _NESTED_FORMAT.search(text) is not None

        def bounded(*args: Any, **kwargs: Any) -> str:
            if nested:  # `{:{}}` takes its width from the arguments
                _check_ints((*args, *kwargs.values()))
            return wrapped(*args, **kwargs)

        return bounded

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int):
                    _check_ints([len(seq) * count])
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > MAX_EXPONENT and abs(left) > 1:
                raise LimitExceeded(f"exponent {right} is over the limit of {MAX_EXPONENT}")
        elif operator == "%" and isinstance(left, str):
            _check_percent(left)
        return super().call_binop(context, operator, left, right)


def _environment(hub: Hub | None) -> _Environment:
    """The hub's environment, built again when the set of live plugins changed (their functions)."""
    if hub is None:
        return _HUBLESS
    plugins = tuple(hub.plugins.loaded_names()) if hub.plugins is not None else ()
    env = hub.data.get(_DATA_KEY)
    if env is None or env.plugins != plugins:
        env = hub.data[_DATA_KEY] = _Environment(hub)
        env.plugins = plugins
    return env


_HUBLESS = _Environment(None)  # validation and pure templates, before there is a hub


# --- rendering -----------------------------------------------------------------------------------
def parse_native(text: str) -> Any:
    """A rendered text as the value it spells ("5" -> 5, "[1, 2]" -> list, "true" -> True), the
    way Home Assistant does: strings and numbers written unusually ("1e3", "007") stay text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        result = literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    if isinstance(result, str | complex):
        return text
    if isinstance(result, int | float) and not isinstance(result, bool):
        return result if _IS_NUMERIC.match(text) else text
    return result


def _template_line(err: BaseException) -> int | None:
    line, tb = None, err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@dataclass(frozen=True, slots=True)
class RenderInfo:
    """A render's result (or error) and what it read: the entities, domains and signals."""

    result: Any
    entities: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    all_states: bool = False
    exception: TemplateError | None = None
    signals: frozenset[str] = frozenset()
    has_time: bool = False  # read the clock: worth rendering again as time passes


class Template:
    """One template text; compiled on first use (or by `ensure_valid`) in the hub's environment."""

    def __init__(self, source: str, hub: Hub | None = None) -> None:
        if not isinstance(source, str):
            raise TypeError(f"a template is text, got {type(source).__name__}")
        self.source = source
        self.hub = hub
        self.is_static = not is_template(source)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and (other.source, other.hub) == (self.source, self.hub)

    def __hash__(self) -> int:
        return hash(self.source)

    def ensure_valid(self) -> None:
        """Raise TemplateError on a syntax error. Without a hub only the syntax is checked: the
        names of plugin filters and tests are known once the hub is."""
        if self.is_static:
            return
        self._compile(self.hub, parse_only=self.hub is None)

    def _compile(self, hub: Hub | None, *, parse_only: bool = False) -> Any:
        env = _environment(hub)
        try:
            return env.parse(self.source) if parse_only else env.compile_source(self.source)
        except jinja2.TemplateSyntaxError as err:
            raise TemplateError(err.message or str(err), self.source, err.lineno) from None
        except jinja2.TemplateError as err:  # an unknown filter or test
            raise TemplateError(str(err), self.source) from None

    def render(self, variables: Variables = None, *, parse_result: bool = True) -> Any:
        """The result; a static text comes back as it is, a template's output (stripped) as the
        native value it spells unless `parse_result=False`."""
        return self._render(variables, self.hub, fn.RenderScope(), parse_result)

    def render_with_info(
        self, variables: Variables = None, *, parse_result: bool = True
    ) -> RenderInfo:
        return self._info(variables, self.hub, parse_result)

    def _info(self, variables: Variables, hub: Hub | None, parse: bool) -> RenderInfo:
        scope = fn.RenderScope()
        result, error = None, None
        try:
            result = self._render(variables, hub, scope, parse)
        except TemplateError as err:
            error = err
        return RenderInfo(
            result, frozenset(scope.entities), frozenset(scope.domains), scope.all_states,
            error, frozenset(scope.signals), scope.has_time,
        )  # fmt: skip

    def _render(
        self, variables: Variables, hub: Hub | None, scope: RenderScope, parse: bool
    ) -> Any:
        if self.is_static:
            return self.source
        compiled = self._compile(hub)
        token = fn._SCOPE.set(scope)
        chunks: list[str] = []
        size = 0
        try:
            for chunk in compiled.generate(**dict(variables or {})):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise LimitExceeded(f"output over {MAX_OUTPUT} characters")
                chunks.append(chunk)
        except Exception as err:
            if isinstance(err, LimitExceeded | jinja2.TemplateError | RuntimeError):
                message = str(err)
            else:
                message = f"{type(err).__name__}: {err}"
            raise TemplateError(message, self.source, _template_line(err)) from err
        finally:
            fn._SCOPE.reset(token)
        text = "".join(chunks).strip()
        return parse_native(text) if parse else text


def render_complex(value: Any, variables: Variables, hub: Hub) -> Any:
    """Render every Template and template text inside dicts and lists; other values stay."""
    if isinstance(value, Template):
        return value._render(variables, value.hub or hub, fn.RenderScope(), True)
    if isinstance(value, str):
        return Template(value, hub).render(variables) if is_template(value) else value
    if isinstance(value, Mapping):
        return {
            render_complex(k, variables, hub): render_complex(v, variables, hub)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [render_complex(v, variables, hub) for v in value]
    return value


# --- validators for voluptuous schemas ------------------------------------------------------------
def template_value(value: Any) -> Template:
    """A text (or number) as a checked Template; syntax errors are vol.Invalid."""
    if isinstance(value, Template):
        template = value
    elif value is None or isinstance(value, list | dict | bool):
        raise vol.Invalid(f"expected a template text, got {type(value).__name__}")
    else:
        template = Template(str(value))
    try:
        template.ensure_valid()
    except TemplateError as err:
        raise vol.Invalid(f"invalid template: {err}") from None
    return template


def dynamic_template(value: Any) -> Template:
    """Like template_value, but the text must be a template (contain {{ or {%)."""
    text = value.source if isinstance(value, Template) else value
    if not isinstance(text, str) or not is_template(text):
        raise vol.Invalid("expected a template ({{ ... }} or {% ... %})")
    return template_value(value)


# --- tracking ------------------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    if isinstance(a, TemplateError) or isinstance(b, TemplateError):
        return type(a) is type(b) and str(a) == str(b)
    return type(a) is type(b) and bool(a == b)


_Watch = tuple[
    frozenset[str], frozenset[str], bool, frozenset[str]
]  # entities, domains, all, signals


class TemplateTracker:
    """Re-renders when (and only when) an entity, domain or signal the last render read changes,
    and once a minute while it reads the clock; calls `callback(result, previous)` when the result
    differs. `result` is a TemplateError when the render failed. `start()` renders once, without
    calling back: `.result` holds the first result."""

    def __init__(
        self,
        hub: Hub,
        template: Template,
        variables: Variables,
        callback: Callable[[Any, Any], Any],
    ) -> None:
        self.hub, self.template, self.variables = hub, template, dict(variables or {})
        self.callback = callback
        self.result: Any = None
        self.info: RenderInfo | None = None
        self.renders = 0
        self._unsubscribe: list[Callable[[], None]] = []
        self._watching: _Watch | None = None
        self._timer: Timer | None = None

    def start(self) -> None:
        self._refresh(initial=True)

    def stop(self) -> None:
        self._listen(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refresh(self, initial: bool = False) -> None:
        self.renders += 1
        info = self.template._info(self.variables, self.template.hub or self.hub, True)
        watch = (info.entities, info.domains, info.all_states, info.signals)
        if info.exception is not None and (old := self._watching) is not None:
            # A failed render read less than usual: keep watching what the last one read too.
            watch = (watch[0] | old[0], watch[1] | old[1], watch[2] or old[2], watch[3] | old[3])
        self.info = info
        self._listen(watch)
        self._arm_clock(info.has_time)
        previous, self.result = self.result, info.exception or info.result
        if initial or _same(self.result, previous):
            return
        try:
            outcome = self.callback(self.result, previous)
            if inspect.isawaitable(outcome):
                self.hub.create_task(outcome, "template tracker callback")  # type: ignore[arg-type]
        except Exception:
            _LOGGER.exception("template tracker callback failed for %r", self.template.source)

    def _listen(self, watch: _Watch | None) -> None:
        if watch == self._watching:
            return
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe, self._watching = [], watch
        if watch is None:
            return
        entities, domains, all_states, signals = watch
        listen = self.hub.bus.listen
        if all_states:
            self._unsubscribe.append(listen(EVENT_STATE_CHANGED, self._changed))
        elif entities or domains:

            def wanted(data: Mapping[str, Any]) -> bool:
                entity_id = data["entity_id"]
                return entity_id in entities or entity_id.partition(".")[0] in domains

            self._unsubscribe.append(listen(EVENT_STATE_CHANGED, self._changed, wanted))
        if signals:
            self._unsubscribe.append(
                listen("signal_updated", self._changed, lambda d: d["name"] in signals)
            )

    def _arm_clock(self, wanted: bool) -> None:
        if not wanted or self._timer is not None:
            return
        now = self.hub.now()
        at = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        self._timer = self.hub.clock.call_at(at, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._refresh()

    def _changed(self, event: Event) -> None:
        self._refresh()
