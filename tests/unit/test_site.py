"""The site tree: a realistic depot loads; each kind of wiring mistake is named at its key."""

from __future__ import annotations

import textwrap

import pytest
import voluptuous as vol
import yaml

from hub.charging import SITE_SCHEMA, ChargerNode, NodeKind, Phase, Site

DEPOT = """
id: depot_a
name: Depot A
max_current: 400
max_power_kw: 277
phases: 3
voltage: 230
meters: {grid: sensor.grid_power, building: sensor.building_power, pv: sensor.pv_power}
panels:
  - id: panel_a
    max_current: 250
    circuits:
      - id: a1
        max_current: 63
        chargers:
          - {entity: charger.bay_01, phase_rotation: L1L2L3, max_current: 32}
          - {entity: charger.bay_02, phase_rotation: L2L3L1, max_current: 32}
      - id: a2
        max_current: 63
        chargers:
          - {entity: charger.bay_03, phase_rotation: L3L1L2, max_current: 32}
          - {entity: charger.bay_04, phase_rotation: L1L2L3, max_current: 32}
      - id: a3
        max_current: 63
        chargers:
          - {entity: charger.bay_05, phase_rotation: L2L3L1, max_current: 32}
          - {entity: charger.bay_06, phase_rotation: L3L1L2, max_current: 32}
  - id: panel_b
    max_current: 250
    max_power_kw: 170
    panels:
      - id: sub_b1
        name: Sub-panel B1 (van bays)
        max_current: [100, 100, 80]
        circuits:
          - id: b1
            max_current: 63
            chargers:
              - {entity: charger.bay_07, phase_rotation: L2L3L1, max_current: 32}
              - {entity: charger.bay_08, phase_rotation: L3L1L2, max_current: 32, min_current: 8}
          - id: b2
            max_current: 40
            chargers:
              - {entity: charger.bay_09, phases: 1, phase_rotation: L1, max_current: 32}
              - {entity: charger.bay_10, phases: 1, phase_rotation: L2, max_current: 32}
              - {entity: charger.bay_11, phases: 1, phase_rotation: L3, max_current: 32}
              - {entity: charger.bay_12, phases: 1, phase_rotation: L2}
    circuits:
      - id: dc1
        max_current: 80
        chargers:
          - {id: hpc_1, entity: charger.hpc_1, dc: true, max_power_kw: 50}
      - id: dc2
        max_current: 80
        chargers:
          - {entity: charger.hpc_2, dc: true, max_power_kw: 50}
"""


def _load(text: str) -> dict:
    return yaml.safe_load(textwrap.dedent(text))


def _invalid(text: str) -> vol.Invalid:
    with pytest.raises(vol.Invalid) as info:
        SITE_SCHEMA(_load(text))
    return info.value


def test_given_a_realistic_depot_then_the_tree_loads_with_every_charger_placed() -> None:
    site = Site.from_config(_load(DEPOT))

    chargers = site.chargers()
    assert site.id == "depot_a"
    assert len(chargers) == 14
    assert sum(c.dc for c in chargers) == 2
    assert site.root.max_current == (400.0, 400.0, 400.0)
    assert site.root.max_power_kw == 277.0
    assert site.meters == {
        "grid": "sensor.grid_power",
        "building": "sensor.building_power",
        "pv": "sensor.pv_power",
    }
    assert [n.id for n in site.path_to("charger.bay_10")] == [
        "depot_a",
        "panel_b",
        "sub_b1",
        "b2",
        "charger.bay_10",
    ]
    assert site.node("sub_b1").max_current == (100.0, 100.0, 80.0)
    assert site.node("sub_b1").name == "Sub-panel B1 (van bays)"
    assert site.node("hpc_1") is site.node("charger.hpc_1")
    assert [n.kind for n in site.path_to("hpc_1")] == [
        NodeKind.SITE,
        NodeKind.PANEL,
        NodeKind.CIRCUIT,
        NodeKind.CHARGER,
    ]


def test_given_mixed_rotations_then_each_charger_phase_lands_on_its_grid_phase() -> None:
    site = Site.from_config(_load(DEPOT))

    assert site.charger_phase_map("charger.bay_01") == ("L1", "L2", "L3")
    assert site.charger_phase_map("charger.bay_02") == (Phase.L2, Phase.L3, Phase.L1)
    assert site.charger_phase_map("charger.bay_03") == ("L3", "L1", "L2")
    assert site.charger_phase_map("charger.bay_10") == ("L2",)
    bay_10 = site.node("charger.bay_10")
    assert isinstance(bay_10, ChargerNode)
    # A single-phase charger loads only its grid phase; the others carry nothing from it.
    assert bay_10.max_current == (0.0, 32.0, 0.0)
    assert bay_10.min_current == 6.0 and bay_10.phases == 1
    # Unconfigured max: the charger is bounded only by its circuit.
    assert site.node("charger.bay_12").max_current == (0.0, None, 0.0)


def test_given_children_whose_sum_exceeds_the_parent_then_that_is_allowed() -> None:
    # Two 32 A chargers on a 63 A circuit: load management keeps the sum within the breaker.
    site = Site.from_config(_load(DEPOT))
    b1 = site.node("b1")
    assert sum(c.max_current[0] or 0 for c in b1.children) == 64.0 > (b1.max_current[0] or 0)


def test_given_a_validated_block_then_validating_again_gives_the_same_result() -> None:
    once = SITE_SCHEMA(_load(DEPOT))
    assert SITE_SCHEMA(once) == once


def test_given_tree_walk_then_parents_come_before_children() -> None:
    site = Site.from_config(_load(DEPOT))
    seen: set[str] = set()
    for node in site.walk():
        assert node.parent is None or node.parent.id in seen
        seen.add(node.id)
    assert len(seen) == 1 + 2 + 1 + 7 + 14


def test_asking_for_a_node_that_is_not_there_names_the_site() -> None:
    site = Site.from_config(_load(DEPOT))
    with pytest.raises(KeyError, match=r"depot_a.*bay_99"):
        site.node("bay_99")
    with pytest.raises(KeyError, match="not a charger"):
        site.charger_phase_map("b2")


ONE_CIRCUIT = """
panels:
  - id: p1
    max_current: 63
    circuits:
      - id: c1
        max_current: 32
        chargers: [{{{charger}}}]
"""

CASES = {
    "circuit breaker bigger than its panel": (
        """
        panels:
          - id: p1
            max_current: 40
            circuits:
              - {id: c1, max_current: 32}
              - {id: c2, max_current: 63}
        """,
        ["panels", 0, "circuits", 1, "max_current"],
        ["circuit 'c2'", "63 A", "panel 'p1'", "40 A"],
    ),
    "one phase of a per-phase rating too big": (
        """
        max_current: 400
        panels:
          - id: p1
            max_current: [63, 63, 63]
            circuits: [{id: c1, max_current: [32, 32, 80]}]
        """,
        ["panels", 0, "circuits", 0, "max_current"],
        ["circuit 'c1'", "80 A on L3", "panel 'p1'"],
    ),
    "panel power above the grid connection": (
        """
        max_power_kw: 277
        panels: [{id: p1, max_power_kw: 300}]
        """,
        ["panels", 0, "max_power_kw"],
        ["panel 'p1'", "300 kW", "site 'site'", "277 kW"],
    ),
    "charger above its circuit": (
        ONE_CIRCUIT.format(charger="entity: charger.bay_01, max_current: 40"),
        ["panels", 0, "circuits", 0, "chargers", 0, "max_current"],
        ["charger 'charger.bay_01'", "40 A", "circuit 'c1'", "32 A"],
    ),
    "id used twice": (
        """
        panels:
          - {id: p1, circuits: [{id: c1}]}
          - {id: p2, circuits: [{id: c1}]}
        """,
        ["panels", 1, "circuits", 0, "id"],
        ["'c1' is used twice", "circuit 'c1'"],
    ),
    "same charger wired twice": (
        """
        circuits:
          - id: c1
            chargers: [{entity: charger.bay_01}, {entity: charger.bay_01}]
        """,
        ["circuits", 0, "chargers", 1, "entity"],
        ["charger.bay_01 is wired twice", "charger 'charger.bay_01'"],
    ),
    "single-phase charger naming two phases": (
        ONE_CIRCUIT.format(charger="entity: charger.bay_01, phases: 1, phase_rotation: L1L2"),
        ["panels", 0, "circuits", 0, "chargers", 0, "phase_rotation"],
        ["'charger.bay_01'", "L1L2", "the one grid phase"],
    ),
    "three-phase charger naming one phase": (
        ONE_CIRCUIT.format(charger="entity: charger.bay_01, phase_rotation: L2"),
        ["panels", 0, "circuits", 0, "chargers", 0, "phase_rotation"],
        ["3 phase(s)", "all three phases"],
    ),
    "rotation repeating a phase": (
        ONE_CIRCUIT.format(charger="entity: charger.bay_01, phase_rotation: L1L1L2"),
        ["panels", 0, "circuits", 0, "chargers", 0, "phase_rotation"],
        ["'L1L1L2'", "distinct grid phases"],
    ),
    "rotation naming a phase that does not exist": (
        ONE_CIRCUIT.format(charger="entity: charger.bay_01, phases: 1, phase_rotation: L4"),
        ["panels", 0, "circuits", 0, "chargers", 0, "phase_rotation"],
        ["'L4'"],
    ),
    "min current above max current": (
        ONE_CIRCUIT.format(charger="entity: charger.bay_01, min_current: 16, max_current: 10"),
        ["panels", 0, "circuits", 0, "chargers", 0, "min_current"],
        ["'charger.bay_01'", "16 A", "10 A"],
    ),
    "min current above the circuit": (
        """
        circuits:
          - id: c1
            max_current: 4
            chargers: [{entity: charger.bay_01}]
        """,
        ["circuits", 0, "chargers", 0, "min_current"],
        ["charger 'charger.bay_01'", "6 A", "circuit 'c1'", "4 A"],
    ),
    "DC charger without its power": (
        ONE_CIRCUIT.format(charger="entity: charger.hpc_1, dc: true"),
        ["panels", 0, "circuits", 0, "chargers", 0, "max_power_kw"],
        ["DC charger 'charger.hpc_1'", "max_power_kw"],
    ),
    "DC charger too big for its circuit": (
        """
        circuits:
          - id: dc1
            max_current: 100
            chargers: [{id: hpc_1, dc: true, max_power_kw: 150}]
        """,
        ["circuits", 0, "chargers", 0, "max_power_kw"],
        ["charger 'hpc_1'", "217 A", "150 kW", "circuit 'dc1'", "100 A"],
    ),
    "two-phase charger": (
        ONE_CIRCUIT.format(charger="entity: charger.bay_01, phases: 2"),
        ["panels", 0, "circuits", 0, "chargers", 0, "phases"],
        ["1 or 3"],
    ),
    "three-phase charger on a single-phase site": (
        """
        phases: 1
        circuits: [{id: c1, chargers: [{entity: charger.bay_01}]}]
        """,
        ["circuits", 0, "chargers", 0, "phases"],
        ["charger 'charger.bay_01'", "L1L2L3", "only L1"],
    ),
    "charger with neither entity nor id": (
        ONE_CIRCUIT.format(charger="max_current: 16"),
        ["panels", 0, "circuits", 0, "chargers", 0],
        ["`entity`", "`id`"],
    ),
    "a misspelt key": (
        ONE_CIRCUIT.format(charger="entity: charger.bay_01, max_curent: 16"),
        ["panels", 0, "circuits", 0, "chargers", 0, "max_curent"],
        ["extra keys not allowed"],
    ),
    "a rating with two phases": (
        "panels: [{id: p1, max_current: [63, 63]}]",
        ["panels", 0, "max_current"],
        ["three [L1, L2, L3]", "2 values"],
    ),
    "a negative rating inside a per-phase list": (
        "panels: [{id: p1, max_current: [63, -1, 63]}]",
        ["panels", 0, "max_current", 1],
        ["positive number", "-1"],
    ),
    "a meter that is not an entity id": (
        "meters: {grid: grid power}",
        ["meters", "grid"],
        ["entity id", "'grid power'"],
    ),
}


@pytest.mark.parametrize(("text", "path", "fragments"), CASES.values(), ids=list(CASES))
def test_given_a_wiring_mistake_then_the_error_names_the_key_and_the_nodes(
    text: str, path: list, fragments: list[str]
) -> None:
    err = _invalid(text)

    assert err.path == path
    for fragment in fragments:
        assert fragment in err.msg


def test_given_several_mistakes_then_all_are_reported_at_once() -> None:
    err = _invalid(
        """
        panels:
          - id: p1
            max_current: 40
            circuits:
              - {id: c1, max_current: 63}
              - id: c2
                max_current: 32
                chargers: [{entity: charger.bay_01, max_current: 40}]
        """
    )

    assert isinstance(err, vol.MultipleInvalid)
    assert [e.path for e in err.errors] == [
        ["panels", 0, "circuits", 0, "max_current"],
        ["panels", 0, "circuits", 1, "chargers", 0, "max_current"],
    ]
