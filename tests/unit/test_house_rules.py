"""The rules of the house, checked mechanically over the source tree (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    p
    for top in ("hub", "plugins", "web")
    for p in (ROOT / top).rglob("*.py")
    if "migrations" not in p.parts
]
WALL_CLOCK = {("time", "time"), ("datetime", "now"), ("datetime", "utcnow"), ("date", "today")}


def _calls(tree: ast.AST) -> list[tuple[str, str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            found.append((name, node.func.attr, node.lineno))
    return found


def test_sources_were_found() -> None:
    assert len(SOURCES) > 10


def test_nothing_but_the_clock_reads_the_wall_clock() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {owner}.{attr}()"
        for path in SOURCES
        if path != ROOT / "hub" / "clock.py"
        for owner, attr, line in _calls(ast.parse(path.read_text()))
        if (owner, attr) in WALL_CLOCK
    ]
    assert offenders == []


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_the_core_imports_no_plugin_and_no_plugin_imports_another() -> None:
    offenders = []
    for path in SOURCES:
        rel = path.relative_to(ROOT)
        for name in _imports(path):
            if not name.startswith("plugins"):
                continue
            if rel.parts[0] in ("hub", "web"):
                offenders.append(f"{rel}: core imports {name}")
            elif rel.parts[0] == "plugins" and len(rel.parts) > 2:
                own = f"plugins.{rel.parts[1]}"
                if name != own and not name.startswith(own + "."):
                    offenders.append(f"{rel}: imports another plugin {name}")
    assert offenders == []


def test_every_module_says_what_it_is_for_and_stays_small() -> None:
    problems = []
    for path in SOURCES:
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if text.strip() and not ast.get_docstring(ast.parse(text)) and path.name != "__init__.py":
            problems.append(f"{rel}: no module docstring")
        if len(text.splitlines()) > 500:
            problems.append(f"{rel}: over 500 lines")
    assert problems == []
