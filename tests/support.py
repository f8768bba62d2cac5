"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing_part(reason: str) -> None:
    """A system part the test needs is missing: CI installs it, so there that is a failure."""
    if IN_CI:
        pytest.fail(f"CI should provide this but does not: {reason}")
    pytest.skip(reason)


def require_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        missing_part(f"needs {', '.join(missing)} on PATH")
