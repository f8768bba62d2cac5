"""The layers, enforced: every `import` in trayapp/ (at the top of a module or inside a
function) is read with `ast` and checked against the rules below, and the modules' top-level
imports must form no cycle.

- trayapp.core: logic and data; no Qt, no windows, no command line, and no OS: it never
  imports trayapp.platforms nor a module that acts on the OS or asks which OS it is
  (CORE_NO_OS: processes, signals, native calls, the registry, user databases, file locks,
  D-Bus), and never reads `sys.platform` or `os.name` or calls the `os` functions of that kind.
  What core needs to know of the OS (which OS, its ephemeral range) is handed in by the caller
  (platforms.host_facts(), core/host.py). Core may still use the portable standard library
  for its own work: reading and writing its own files (pathlib, trayapp.fileio; platformdirs
  says where they live), sockets for the health probe and remote entries, the environment's
  Bluesky settings (os.environ) and the services database (socket.getservbyport).
- trayapp.platforms: the OS behind small interfaces; no Qt widgets, no windows, no command line.
- trayapp.ui: presents; never the command line (the command line starts the tray, not the
  other way round).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trayapp"

# Modules, and names in modules, that act on the OS or tell which OS this is. A name here
# matches itself and everything below it ("win32com" also bans "win32com.client").
CORE_NO_OS = (
    "trayapp.platforms",
    # processes and signals
    "psutil",
    "subprocess",
    "multiprocessing",
    "signal",
    "os.kill",
    "os.killpg",
    "os.system",
    "os.popen",
    "os.fork",
    "os.forkpty",
    "os.startfile",
    "os.getpid",
    "os.getppid",
    # native calls and per-OS APIs
    "ctypes",
    "_ctypes",
    "winreg",
    "_winreg",
    "msvcrt",
    "_winapi",
    "nt",
    "posix",
    "win32api",
    "win32con",
    "win32com",
    "pywintypes",
    "objc",
    "AppKit",
    "Foundation",
    "jeepney",
    "dbus",
    # terminals, locks, limits, memory maps
    "fcntl",
    "termios",
    "tty",
    "pty",
    "resource",
    "mmap",
    # users
    "pwd",
    "grp",
    "spwd",
    "getpass",
    "os.getuid",
    "os.geteuid",
    "os.getlogin",
    # which OS this is: core is told (HostFacts), it does not look
    "platform",
    "sysconfig",
    "os.name",
    "os.uname",
    "sys.platform",
    "sys.getwindowsversion",
)
# os.execv, os.spawnl, os.posix_spawn and their siblings.
CORE_NO_OS_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn")
FORBIDDEN = {
    "trayapp.core": ("PySide6", "trayapp.ui", "trayapp.cli", *CORE_NO_OS),
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


def module_attributes(tree: ast.AST) -> set[str]:
    """`os.getpid`, `sys.platform`: attributes read from an imported module, by its real name
    (`import os as o; o.kill` counts as `os.kill`)."""
    aliases = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    return {
        f"{aliases[node.value.id]}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
    }


def violations(name: str, tree: ast.AST) -> list[str]:
    found = imports(tree) | module_attributes(tree)
    broken = []
    for layer, banned in FORBIDDEN.items():
        if within(name, layer):
            broken += [f"{name} uses {i}" for i in found if any(within(i, b) for b in banned)]
    if within(name, "trayapp.core"):
        broken += [f"{name} uses {i}" for i in found if i.startswith(CORE_NO_OS_PREFIXES)]
    return sorted(broken)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_layers_hold() -> None:
    broken = [v for name, tree in modules() for v in violations(name, tree)]
    assert broken == []


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


@pytest.mark.parametrize(
    ("source", "used"),
    [
        ("from trayapp.platforms import current_os", "trayapp.platforms"),
        ("from trayapp import platforms", "trayapp.platforms"),
        ("import trayapp.platforms.ephemeral", "trayapp.platforms.ephemeral"),
        ("def f():\n    import subprocess", "subprocess"),
        ("import psutil", "psutil"),
        ("import win32com.client", "win32com.client"),
        ("from os import getpid", "os.getpid"),
        ("import os as o\no.execvp('x', [])", "os.execvp"),
        ("import os\nos.kill(1, 9)", "os.kill"),
        ("import sys\nWINDOWS = sys.platform == 'win32'", "sys.platform"),
        ("import platform\nplatform.system()", "platform"),
    ],
)
def test_core_may_not_touch_the_os(source: str, used: str) -> None:
    """Each way of reaching the OS from core is caught, and in core only."""
    assert f"trayapp.core.x uses {used}" in violations("trayapp.core.x", ast.parse(source))
    assert violations("trayapp.platforms.x", ast.parse(source)) == []


def test_core_may_use_portable_io() -> None:
    source = (
        "import os, socket, sys\n"
        "from pathlib import Path\n"
        "from trayapp.fileio import atomic_write\n"
        "os.replace('a', 'b'); os.environ.get('X'); sys.stderr.write('')\n"
        "socket.getservbyport(22, 'tcp')\n"
    )
    assert violations("trayapp.core.x", ast.parse(source)) == []
