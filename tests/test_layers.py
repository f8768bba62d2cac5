"""The layers, enforced: every `import` in trayapp/ (at the top of a module or inside a
function) is read with `ast` and checked against the rules below, and the modules' top-level
imports must form no cycle.

- trayapp.core: logic and data; no Qt, no windows, no command line.
- trayapp.platforms: the OS behind small interfaces; no Qt widgets, no windows, no command line.
- trayapp.ui: presents; never the command line (the command line starts the tray, not the
  other way round).
- core may use only the platform facts listed in CORE_USES_PLATFORMS; a new one fails here
  (pass what the OS says in from the caller instead).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trayapp"

# (importing module, imported module): what core still asks of the OS itself, each a known
# debt to pass in from the caller instead. Nothing may be added to this list.
CORE_USES_PLATFORMS = {
    ("trayapp.core.diagnosis", "trayapp.platforms"),
    ("trayapp.core.diagnosis", "trayapp.platforms.commands"),
    ("trayapp.core.ranges", "trayapp.platforms"),
    ("trayapp.core.ranges", "trayapp.platforms.ephemeral"),
    ("trayapp.core.services", "trayapp.platforms"),
}
FORBIDDEN = {
    "trayapp.core": ("PySide6", "trayapp.ui", "trayapp.cli"),
    "trayapp.platforms": ("PySide6.QtWidgets", "trayapp.ui", "trayapp.cli"),
    "trayapp.ui": ("trayapp.cli",),
    "trayapp.fileio": ("PySide6", "trayapp.ui", "trayapp.cli", "trayapp.core"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield module_name(path), ast.parse(path.read_text(encoding="utf-8"), str(path))


def imports(tree: ast.AST, top_level_only: bool = False) -> set[str]:
    nodes = tree.body if top_level_only and isinstance(tree, ast.Module) else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from trayapp.core import config` imports the module trayapp.core.config.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_layers_hold() -> None:
    broken = []
    core_platforms = set()
    known = {name for name, _tree in modules()}
    for name, tree in modules():
        found = imports(tree)
        for layer, banned in FORBIDDEN.items():
            if within(name, layer):
                broken += [
                    f"{name} imports {i}" for i in found if any(within(i, b) for b in banned)
                ]
        if within(name, "trayapp.core"):
            core_platforms |= {
                (name, i) for i in found if within(i, "trayapp.platforms") and i in known
            }
    assert broken == []
    assert core_platforms <= CORE_USES_PLATFORMS, sorted(core_platforms - CORE_USES_PLATFORMS)


def test_no_import_cycles() -> None:
    trees = dict(modules())
    graph = {
        name: {i for i in imports(tree, top_level_only=True) if i in trees and i != name}
        for name, tree in trees.items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # A package importing its own submodules (trayapp.platforms -> .scanners) is not a cycle
    # unless a submodule imports the package back at import time.
    assert cycles == []


def test_the_rules_see_a_violation() -> None:
    """The checker itself: an import in a function body counts as much as one at the top."""
    tree = ast.parse("def f():\n    from trayapp.cli import main\n")
    assert "trayapp.cli" in imports(tree)
    assert "trayapp.cli" not in imports(tree, top_level_only=True)
    assert within("trayapp.ui.app", "trayapp.ui") and not within("trayapp.uix", "trayapp.ui")
