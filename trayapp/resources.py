"""Finds files under resources/ from a source checkout, an installed wheel or a bundle."""

from __future__ import annotations

import os
import sys
from pathlib import Path

RESOURCES_ENV = "PORTWATCH_RESOURCES"


def candidates() -> list[Path]:
    """Where resources may live, most specific first."""
    places: list[Path] = []
    override = os.environ.get(RESOURCES_ENV)
    if override:
        places.append(Path(override))
    bundle = getattr(sys, "_MEIPASS", None)  # a PyInstaller bundle unpacks here
    if bundle:
        places.append(Path(bundle) / "resources")
    package = Path(__file__).resolve().parent
    places.append(package / "_resources")  # an installed wheel carries them in the package
    places.append(package.parent / "resources")  # a source checkout
    return places


def resource_dir() -> Path:
    for place in candidates():
        if (place / "icons").is_dir():
            return place
    raise FileNotFoundError(
        "Port Watch's resources folder is missing; looked in "
        + ", ".join(str(p) for p in candidates())
    )


def resource_path(*parts: str) -> Path:
    """The first place that has this file; FileNotFoundError naming every place looked in."""
    for place in candidates():
        path = place.joinpath(*parts)
        if path.exists():
            return path
    raise FileNotFoundError(
        f"Port Watch resource {'/'.join(parts)} is missing; looked in "
        + ", ".join(str(p) for p in candidates())
    )
