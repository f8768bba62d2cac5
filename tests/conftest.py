"""Every test runs with its own PORTWATCH_HOME, so none touches the user's real settings,
and Qt widgets render offscreen in the test process (the real desktop is in tests/desktop)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def portwatch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "portwatch-home"
    monkeypatch.setenv("PORTWATCH_HOME", str(home))
    yield home
