"""The CI workflow runs every native check: a test in tests/native/ that no step selects would
never run anywhere (they only run on their own OS, and only CI has a Windows and a Mac)."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
NATIVE = REPO / "tests" / "native"


def native_runs() -> list[tuple[str, str, str | None]]:
    """(runner OS the step is for, test file, -k expression or None) of each pytest step."""
    steps = YAML(typ="safe").load(WORKFLOW.read_text())["jobs"]["test-and-bundle"]["steps"]
    found = []
    for step in steps:
        argv = shlex.split(step.get("run", ""))
        if argv[:3] != ["python", "-m", "pytest"]:
            continue
        condition = str(step.get("if", ""))
        os_name = m.group(1) if (m := re.search(r"runner\.os == '(\w+)'", condition)) else "any"
        keyword = argv[argv.index("-k") + 1] if "-k" in argv else None
        for arg in argv[3:]:
            if arg.startswith("tests/native/"):
                found.append((os_name, arg, keyword))
    return found


def selected(name: str, keyword: str | None) -> bool:
    return keyword is None or any(word.strip() in name for word in keyword.split(" or "))


def test_every_native_test_is_run_by_a_workflow_step() -> None:
    runs = native_runs()
    owners = {"test_windows.py": "Windows", "test_macos.py": "macOS", "test_live_os.py": None}
    for path in sorted(NATIVE.glob("test_*.py")):
        names = [
            node.name
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        ]
        assert names, path
        rel = path.relative_to(REPO).as_posix()
        wanted_os = owners[path.name]
        for name in names:
            steps = [
                os_name
                for os_name, file, keyword in runs
                if file == rel and selected(name, keyword)
            ]
            assert steps, f"no workflow step runs {rel}::{name}"
            if wanted_os is not None:
                assert wanted_os in steps, f"{rel}::{name} is not run on {wanted_os}"
