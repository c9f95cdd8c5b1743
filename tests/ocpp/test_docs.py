"""docs/ocpp.md checked against the code and the tests: every action of each version once in its
table, direction and support as the conformance tests declare them, every proof a real test.
"""

from __future__ import annotations

import ast
import functools
import re
from collections import Counter
from pathlib import Path

import pytest

from plugins.ocpp.rpc import Version, actions
from tests.ocpp.test_conformance import (
    CASE_IDS,
    HUB_ACTIONS,
    OCA_CASES,
    STATION_ACTIONS,
    UNSUPPORTED,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ocpp.md"
TABLES = {
    Version.V16: "### OCPP 1.6J: every message",
    Version.V201: "### OCPP 2.0.1: every message",
}
OCA_HEADING = "## OCA test cases"
# `tests/ocpp/<file>.py::<test function>` with an optional `[<parametrize id>]`
REF = re.compile(r"(tests/ocpp/\w+\.py)::(\w+)(?:\[([^\]\s]+)\])?")
CONFORMANCE = "tests/ocpp/test_conformance.py"
VERSIONS = pytest.mark.parametrize("version", list(Version), ids=[v.value for v in Version])


@functools.cache
def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _table(heading: str) -> list[list[str]]:
    """The body rows (cells stripped) of the first table after `heading`."""
    text = _doc()
    assert text.count(heading) == 1, f"{heading!r} must appear once in {DOC.name}"
    rows: list[list[str]] = []
    for line in text[text.index(heading) + len(heading) :].splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2 and set(rows[1]) <= {"---"}, f"no table after {heading!r}"
    return rows[2:]


def _rows(version: Version) -> dict[str, list[str]]:
    rows = _table(TABLES[version])
    assert all(len(row) == 4 for row in rows), "columns: action | direction | supported | proof"
    return {row[0].strip("`"): row for row in rows}


def _literal_ids(node: ast.FunctionDef | ast.AsyncFunctionDef) -> frozenset[str] | None:
    """The ids of a test's parametrize decorator when they are literals; an empty set when it is
    not parametrized, None when the ids are computed (test_conformance.CASE_IDS has those)."""
    found: frozenset[str] | None = frozenset()
    for decorator in node.decorator_list:
        is_call = isinstance(decorator, ast.Call)
        if not is_call or not ast.unparse(decorator.func).endswith("parametrize"):
            continue
        if found:  # stacked parametrize decorators combine their ids: not worked out here
            return None
        ids = next((k.value for k in decorator.keywords if k.arg == "ids"), None)
        try:
            values = ast.literal_eval(ids if ids is not None else decorator.args[1])
        except (ValueError, IndexError, TypeError, SyntaxError):
            return None
        if ids is None and "," in str(ast.literal_eval(decorator.args[0])):
            return None  # tuples of values: pytest joins them, not worked out here
        found = frozenset(str(v) for v in values)
    return found


@functools.cache
def _tests() -> dict[str, dict[str, frozenset[str] | None]]:
    """tests/ocpp/<file>.py -> its test functions -> their parametrize ids (see _literal_ids)."""
    found: dict[str, dict[str, frozenset[str] | None]] = {}
    for path in sorted((ROOT / "tests" / "ocpp").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found[path.relative_to(ROOT).as_posix()] = {
            node.name: _literal_ids(node)
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        }
    return found


def _check_ref(ref: str) -> None:
    match = REF.fullmatch(ref)
    assert match is not None, f"{ref!r} is not tests/ocpp/<file>.py::<test>[<id>]"
    path, name, param = match.groups()
    functions = _tests().get(path)
    assert functions is not None, f"{ref}: no such test file"
    assert name in functions, f"{ref}: no test function {name} in {path}"
    if param is None:
        return
    ids = functions[name]
    if ids is None and path == CONFORMANCE:
        ids = CASE_IDS.get(name)
    assert ids is not None, f"{ref}: the ids of {name} are computed; list them in CASE_IDS"
    assert ids, f"{ref}: {name} is not parametrized"
    assert param in ids, f"{ref}: {name} has no case {param!r}"


@VERSIONS
def test_every_action_appears_exactly_once(version: Version) -> None:
    named = Counter(row[0].strip("`") for row in _table(TABLES[version]))
    assert {a for a, n in named.items() if n > 1} == set(), "listed twice"
    assert set(named) - actions(version) == set(), "not an action of this version"
    assert actions(version) - set(named) == set(), "missing from the table"


@VERSIONS
def test_direction_and_support_are_as_the_tests_declare(version: Version) -> None:
    for action, (_, direction, supported, _) in _rows(version).items():
        station, hub = action in STATION_ACTIONS[version], action in HUB_ACTIONS[version]
        expected = "both" if station and hub else "station → hub" if station else "hub → station"
        assert direction == expected, action
        refused = action in UNSUPPORTED[version]
        assert supported.startswith("no" if refused else "yes"), action
        assert len(supported.split(":", 1)) == 2 and supported.split(":", 1)[1].strip(), (
            f"{action}: say how (handler, service or ocpp.call), or why not"
        )


@VERSIONS
def test_each_row_cites_the_conformance_tests_of_its_action(version: Version) -> None:
    for action, (_, _, _, proof) in _rows(version).items():
        case = f"{version.value}-{action}"
        wanted = []
        if action in STATION_ACTIONS[version]:
            wanted += ["test_station_message", "test_station_message_rejected"]
        if action in HUB_ACTIONS[version]:
            wanted += ["test_hub_message", "test_hub_message_rejected"]
        for name in wanted:
            assert f"`{CONFORMANCE}::{name}[{case}]`" in proof, (action, name)


def test_every_proof_names_a_test_that_exists() -> None:
    cited = re.findall(r"`(tests/ocpp/[^`]*)`", _doc())
    assert len(cited) > 300
    for ref in set(cited):
        if "::" in ref:
            _check_ref(ref)
        else:
            assert (ROOT / ref).is_file(), f"{ref}: no such file"


def test_the_oca_table_is_the_mapping_in_the_conformance_tests() -> None:
    rows = _table(OCA_HEADING)
    table = {row[0].strip("`"): tuple(c.strip() for c in row[1].split(",")) for row in rows}
    assert table == OCA_CASES
    for node in OCA_CASES:
        _check_ref(node)


def test_the_reference_check_catches_mistakes() -> None:
    good = f"{CONFORMANCE}::test_station_message[ocpp1.6-MeterValues]"
    _check_ref(good)
    for bad in (
        f"{CONFORMANCE}::test_station_message[ocpp1.6-RemoteStartTransaction]",  # wrong direction
        f"{CONFORMANCE}::test_no_such_test",
        "tests/ocpp/test_bad_frames.py::test_every_class_of_malformed_frame[ocpp9]",
        "tests/ocpp/test_v201.py::test_cold_boot_reads_the_device_model[ocpp2.0.1]",
        "tests/ocpp/test_nothing.py::test_x",
    ):
        with pytest.raises(AssertionError):
            _check_ref(bad)
