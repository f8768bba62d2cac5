"""The suite must collect on Windows, where pwd, grp, fcntl, termios and resource do not exist:
a module-level import of one of them would turn a whole module into a collection error there,
and the Windows job would test nothing. Proved here on Linux by collecting with those imports
failing for the project's code (tests/collect_without_posix.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("collect_without_posix.py")


def collect(*argv: str, block_also: Path | None = None) -> tuple[int, list[str], str]:
    env = {**os.environ, "COLLECT_BLOCK_ALSO": str(block_also or "")}
    done = subprocess.run(
        list(argv),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    ids = [line for line in done.stdout.splitlines() if "::" in line and " " not in line]
    return done.returncode, ids, done.stdout + done.stderr


@pytest.mark.timeout(180)
def test_the_suite_collects_without_posix_only_modules() -> None:
    code, normal, _ = collect(
        sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"
    )
    assert code == 0 and len(normal) > 100, normal
    code, without, output = collect(sys.executable, str(SCRIPT), "tests")
    assert "error" not in output.lower().splitlines()[-1], output[-3000:]
    assert code == 0, output[-3000:]
    assert without == normal


def test_the_blocker_really_blocks(tmp_path: Path) -> None:
    """The check above is only worth something if a module-level `import pwd` does fail."""
    probe = tmp_path / "test_imports_pwd.py"
    probe.write_text("import pwd\n\n\ndef test_x() -> None:\n    assert pwd\n")
    code, _ids, output = collect(
        sys.executable, str(SCRIPT), "--rootdir", str(tmp_path), str(probe), block_also=tmp_path
    )
    assert code != 0
    assert "test_imports_pwd.py" in output and "No module named 'pwd'" in output
