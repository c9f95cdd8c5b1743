"""The site's electrical tree (grid -> panels -> circuits -> chargers) from `site.yaml`.

`SITE_SCHEMA` validates the block and that each node fits its parent; `Site` is the model load
management reads: per-phase amp and kW ratings, and which grid phase each charger phase is on.

A minimal `site.yaml` (included under `site:` of configuration.yaml):

    max_current: 400          # A per phase at the grid connection; or [L1, L2, L3]
    max_power_kw: 277
    meters: {grid: sensor.grid_power}
    panels:
      - id: panel_a
        max_current: 250
        circuits:
          - id: c1
            max_current: 32
            chargers:
              - {entity: charger.bay_01, phases: 3, phase_rotation: L2L3L1, max_current: 32}
              - {entity: charger.bay_02, phases: 1, phase_rotation: L3}
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import voluptuous as vol

from hub.states import valid_entity_id

DEFAULT_MIN_CURRENT = 6.0  # A: IEC 61851 lowest PWM duty; below it an AC charger pauses instead
DEFAULT_VOLTAGE = 230.0  # V phase-to-neutral
_SLUG_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")

PhaseAmps = tuple[float | None, float | None, float | None]
ConfigPath = tuple[str | int, ...]


class Phase(enum.StrEnum):
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"

    @property
    def index(self) -> int:
        return int(self.value[1]) - 1


class NodeKind(enum.StrEnum):
    SITE = "site"
    PANEL = "panel"
    CIRCUIT = "circuit"
    CHARGER = "charger"


# --- schema: the shape of each block ------------------------------------------------------------
def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise vol.Invalid(f"expected a positive number, got {value!r}")
    if math.isinf(value):
        raise vol.Invalid("expected a finite number")
    return float(value)


def _phase_amps(value: Any) -> list[float | None]:
    """A per-phase rating: one number for all phases, or [L1, L2, L3] (null: no limit there)."""
    if not isinstance(value, list | tuple):
        amps = _positive(value)
        return [amps, amps, amps]
    if len(value) != 3:
        raise vol.Invalid(f"expected one number or three [L1, L2, L3], got {len(value)} values")
    out: list[float | None] = []
    for i, item in enumerate(value):
        try:
            out.append(None if item is None else _positive(item))
        except vol.Invalid as err:
            raise vol.Invalid(err.msg, path=[i]) from None
    return out


def _node_id(value: Any) -> str:
    text = str(value)
    if not text or not set(text.lower()) <= _SLUG_CHARS:
        raise vol.Invalid(f"id {text!r} may hold only letters, digits, '_' and '-'")
    return text


def _entity_id(value: Any) -> str:
    if not isinstance(value, str) or not valid_entity_id(value):
        raise vol.Invalid(f"expected an entity id like charger.bay_01, got {value!r}")
    return value


def _rotation(value: Any) -> str:
    text = str(value).upper().replace(" ", "")
    tokens = re.findall(r"L[123]", text)
    if "".join(tokens) != text or not tokens or len(set(tokens)) != len(tokens):
        raise vol.Invalid(
            f"phase_rotation {value!r} must name distinct grid phases, e.g. L1L2L3, L2L3L1 or L2"
        )
    return text


def _check_charger(conf: dict[str, Any]) -> dict[str, Any]:
    """Rules within one charger block; the tree pass checks it against its circuit."""
    if "entity" not in conf and "id" not in conf:
        raise vol.Invalid("a charger needs `entity` (its charger entity id) or `id`")
    name, phases = conf.get("id") or conf["entity"], conf["phases"]
    if conf["dc"] and "max_power_kw" not in conf:
        raise vol.Invalid(f"DC charger {name!r} needs max_power_kw", path=["max_power_kw"])
    rotation = conf.setdefault("phase_rotation", "L1L2L3"[: 2 * phases])
    if len(rotation) // 2 != phases:
        want = "the one grid phase it is on, e.g. L2" if phases == 1 else "all three phases"
        raise vol.Invalid(
            f"charger {name!r} has {phases} phase(s) but phase_rotation {rotation}: name {want}",
            path=["phase_rotation"],
        )
    if conf["min_current"] > conf.get("max_current", math.inf):
        raise vol.Invalid(
            f"charger {name!r} min_current {conf['min_current']:g} A is above its max_current "
            f"{conf['max_current']:g} A",
            path=["min_current"],
        )
    return conf


_RATINGS = {vol.Optional("max_current"): _phase_amps, vol.Optional("max_power_kw"): _positive}

CHARGER_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("entity"): _entity_id,
            vol.Optional("id"): _node_id,
            vol.Optional("name"): str,
            vol.Optional("phases", default=3): vol.In([1, 3], msg="phases must be 1 or 3"),
            vol.Optional("phase_rotation"): _rotation,
            vol.Optional("min_current", default=DEFAULT_MIN_CURRENT): _positive,
            vol.Optional("max_current"): _positive,  # per charger phase
            vol.Optional("max_power_kw"): _positive,
            vol.Optional("dc", default=False): bool,
        }
    ),
    _check_charger,
)


def _branch(**children: Any) -> vol.Schema:
    lists = {vol.Optional(key, default=list): [schema] for key, schema in children.items()}
    return vol.Schema(
        {vol.Required("id"): _node_id, vol.Optional("name"): str, **_RATINGS, **lists}
    )


def _panel(value: Any) -> dict[str, Any]:
    return PANEL_SCHEMA(value)  # late-bound: panels nest


CIRCUIT_SCHEMA = _branch(chargers=CHARGER_SCHEMA)
PANEL_SCHEMA = _branch(panels=_panel, circuits=CIRCUIT_SCHEMA)
_SITE_STRUCTURE = vol.Schema(
    {
        vol.Optional("id", default="site"): _node_id,
        vol.Optional("name"): str,
        vol.Optional("phases", default=3): vol.In([1, 3], msg="phases must be 1 or 3"),
        vol.Optional("voltage", default=DEFAULT_VOLTAGE): _positive,
        **_RATINGS,
        vol.Optional("meters", default=dict): {
            vol.Optional("grid"): _entity_id,
            vol.Optional("building"): _entity_id,
            vol.Optional("pv"): _entity_id,
        },
        vol.Optional("panels", default=list): [_panel],
        vol.Optional("circuits", default=list): [CIRCUIT_SCHEMA],
    }
)


# --- the model ----------------------------------------------------------------------------------
@dataclass(eq=False, kw_only=True)
class Node:
    """One protective device (or the grid connection); ratings are per grid phase."""

    id: str
    kind: NodeKind
    name: str
    max_current: PhaseAmps = (None, None, None)  # A on grid L1..L3; None = no limit there
    max_power_kw: float | None = None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = field(default=None, repr=False)
    config_path: ConfigPath = ()  # where in site.yaml, for messages

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def ancestors(self) -> Iterator[Node]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


@dataclass(eq=False, kw_only=True)
class ChargerNode(Node):
    entity: str | None = None
    phases: int = 3
    phase_rotation: tuple[Phase, ...] = (Phase.L1, Phase.L2, Phase.L3)  # charger phase -> grid
    min_current: float = DEFAULT_MIN_CURRENT
    rated_current: float | None = None  # A per charger phase, as configured
    dc: bool = False


def _build(conf: Mapping[str, Any], kind: NodeKind, path: ConfigPath, parent: Node | None) -> Node:
    common: dict[str, Any] = {"kind": kind, "parent": parent, "config_path": path}
    common["max_power_kw"] = conf.get("max_power_kw")
    if kind is NodeKind.CHARGER:
        node_id = conf.get("id") or conf["entity"]
        text = conf["phase_rotation"]
        rotation = tuple(Phase(text[i : i + 2]) for i in range(0, len(text), 2))
        # A charger draws nothing on grid phases it is not wired to.
        amps = [conf.get("max_current") if p in rotation else 0.0 for p in Phase]
        node: Node = ChargerNode(
            id=node_id,
            name=conf.get("name", node_id),
            max_current=(amps[0], amps[1], amps[2]),
            entity=conf.get("entity"),
            phases=conf["phases"],
            phase_rotation=rotation,
            min_current=conf["min_current"],
            rated_current=conf.get("max_current"),
            dc=conf["dc"],
            **common,
        )
    else:
        raw = conf.get("max_current") or [None, None, None]
        node = Node(
            id=conf["id"], name=conf.get("name", conf["id"]), max_current=tuple(raw), **common
        )
    for key, child_kind in _CHILD_KINDS.items():
        for i, child in enumerate(conf.get(key, ())):
            node.children.append(_build(child, child_kind, (*path, key, i), node))
    return node


_CHILD_KINDS = {
    "panels": NodeKind.PANEL,
    "circuits": NodeKind.CIRCUIT,
    "chargers": NodeKind.CHARGER,
}


# --- the tree pass: ids are unique and each node fits in its parent -----------------------------
def _where(node: Node) -> str:
    return f"{node.kind} {node.id!r}"


def _tree_errors(conf: Mapping[str, Any]) -> list[vol.Invalid]:
    root = _build(conf, NodeKind.SITE, (), None)
    errors: list[vol.Invalid] = []
    seen: dict[str, Node] = {}
    for node in root.walk():
        fail = _collector(errors, node)
        from_entity = isinstance(node, ChargerNode) and node.id == node.entity
        if node.id in seen and from_entity:
            fail("entity", f"{node.id} is wired twice: {_where(seen[node.id])} and here")
        elif node.id in seen:
            fail("id", f"id {node.id!r} is used twice: by {_where(seen[node.id])} and here")
        seen[node.id] = node
        if isinstance(node, ChargerNode) and node.entity and not from_entity:
            if (other := seen.get(node.entity)) is not None:
                fail("entity", f"{node.entity} is wired twice: {_where(other)} and here")
            seen[node.entity] = node
        for phase in Phase:
            mine = node.max_current[phase.index]
            above = next((a for a in node.ancestors() if a.max_current[phase.index]), None)
            if mine and above and mine > (theirs := above.max_current[phase.index] or 0):
                fail(
                    "max_current",
                    f"{_where(node)} is rated {mine:g} A on {phase}, more than "
                    f"{_where(above)} above it ({theirs:g} A)",
                )
                break
        above_kw = next((a for a in node.ancestors() if a.max_power_kw), None)
        if node.max_power_kw and above_kw and node.max_power_kw > (above_kw.max_power_kw or 0):
            fail(
                "max_power_kw",
                f"{_where(node)} is rated {node.max_power_kw:g} kW, more than "
                f"{_where(above_kw)} above it ({above_kw.max_power_kw:g} kW)",
            )
        if isinstance(node, ChargerNode):
            _charger_errors(node, conf["phases"], conf["voltage"], fail)
    return errors


def _collector(errors: list[vol.Invalid], node: Node) -> Callable[[str, str], None]:
    def fail(key: str, msg: str) -> None:
        errors.append(vol.Invalid(msg, path=[*node.config_path, key]))

    return fail


def _charger_errors(
    node: ChargerNode, site_phases: int, volts: float, fail: Callable[[str, str], None]
) -> None:
    if any(p.index >= site_phases for p in node.phase_rotation):
        wired = "".join(node.phase_rotation)
        key = "phases" if node.phases > site_phases else "phase_rotation"
        fail(key, f"{_where(node)} is wired to {wired}, but the site has only L1")
        return
    # The tightest amp rating above the phases the charger uses: what it must fit under.
    ratings = [
        (amps, a)
        for p in node.phase_rotation
        for a in node.ancestors()
        if (amps := a.max_current[p.index])
    ]
    if not ratings or node.rated_current is not None:
        return
    ceiling, above = min(ratings, key=lambda r: r[0])
    # A DC charger's AC input is at least its output power spread over its phases.
    need = (node.max_power_kw or 0) * 1000 / (node.phases * volts) if node.dc else 0
    if need > ceiling:
        fail(
            "max_power_kw",
            f"{_where(node)} needs about {need:.0f} A per phase for {node.max_power_kw:g} kW, "
            f"more than {_where(above)} above it ({ceiling:g} A)",
        )
    if not node.dc and node.min_current > ceiling:
        fail(
            "min_current",
            f"{_where(node)} min_current {node.min_current:g} A is above "
            f"{_where(above)} ({ceiling:g} A)",
        )


def _check_tree(conf: dict[str, Any]) -> dict[str, Any]:
    errors = _tree_errors(conf)
    if errors:
        raise vol.MultipleInvalid(errors)
    return conf


SITE_SCHEMA = vol.Schema(vol.All(_SITE_STRUCTURE, _check_tree))


@dataclass(eq=False)
class Site:
    """The validated tree with lookups; `hub.site` once configured."""

    root: Node
    phases: int = 3
    voltage: float = DEFAULT_VOLTAGE
    meters: dict[str, str] = field(default_factory=dict)
    _index: dict[str, Node] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Site:
        """Build from a `site:` block; validating again is harmless, so raw config works too."""
        conf = SITE_SCHEMA(dict(config))
        site = cls(
            _build(conf, NodeKind.SITE, (), None),
            conf["phases"],
            conf["voltage"],
            dict(conf["meters"]),
        )
        for node in site.walk():
            site._index[node.id] = node
            if isinstance(node, ChargerNode) and node.entity:
                site._index.setdefault(node.entity, node)
        return site

    @property
    def id(self) -> str:
        return self.root.id

    def walk(self) -> Iterator[Node]:
        return self.root.walk()

    def node(self, node_id: str) -> Node:
        """A node by id; a charger also by its entity id."""
        try:
            return self._index[node_id]
        except KeyError:
            raise KeyError(f"site {self.id!r} has no node {node_id!r}") from None

    def chargers(self) -> list[ChargerNode]:
        return [n for n in self.walk() if isinstance(n, ChargerNode)]

    def _charger(self, charger: str | ChargerNode) -> ChargerNode:
        node = self.node(charger) if isinstance(charger, str) else charger
        if not isinstance(node, ChargerNode):
            raise KeyError(f"{_where(node)} is not a charger")
        return node

    def path_to(self, charger: str | ChargerNode) -> list[Node]:
        """The nodes from the grid connection down to the charger: every limit it is under."""
        node = self._charger(charger)
        return [*reversed(list(node.ancestors())), node]

    def charger_phase_map(self, charger: str | ChargerNode) -> tuple[Phase, ...]:
        """Grid phase of each charger phase: L2L3L1 wiring gives (L2, L3, L1)."""
        return self._charger(charger).phase_rotation
