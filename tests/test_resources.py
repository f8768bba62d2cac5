"""trayapp/resources.py: one lookup for a source checkout, an installed wheel and a bundle.

The order is $PORTWATCH_RESOURCES, sys._MEIPASS/resources (PyInstaller), trayapp/_resources
(wheel), <repo>/resources (checkout). Here each place is laid out for real in a temporary
folder; the installed wheel itself is tested in test_packaging.py and the bundle in
desktop/test_bundle.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import trayapp
from trayapp import resources

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(trayapp.__file__).resolve().parent


def make_resources(folder: Path, marker: str) -> Path:
    """A resources folder whose services.json says which one it is."""
    (folder / "icons").mkdir(parents=True)
    (folder / "icons" / "app.svg").write_text("<svg/>", encoding="utf-8")
    (folder / "services.json").write_text(json.dumps({"marker": marker}), encoding="utf-8")
    return folder


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(resources.RESOURCES_ENV, raising=False)
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    return monkeypatch


@pytest.mark.skipif(PACKAGE.parent != REPO, reason="trayapp is not imported from this checkout")
def test_this_checkout_uses_its_resources_folder(clean: pytest.MonkeyPatch) -> None:
    # An editable install (make test) runs the package from the checkout: there is no
    # trayapp/_resources, so the repo's resources/ is used.
    assert not (PACKAGE / "_resources").exists()
    assert resources.resource_dir() == REPO / "resources"
    assert resources.resource_path("services.json") == REPO / "resources" / "services.json"
    assert resources.resource_path("icons", "app.svg").is_file()


def test_the_places_in_order(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resources.candidates() == [PACKAGE / "_resources", PACKAGE.parent / "resources"]
    clean.setattr(sys, "_MEIPASS", str(tmp_path / "bundle"), raising=False)
    clean.setenv(resources.RESOURCES_ENV, str(tmp_path / "override"))
    assert resources.candidates() == [
        tmp_path / "override",
        tmp_path / "bundle" / "resources",
        PACKAGE / "_resources",
        PACKAGE.parent / "resources",
    ]


def test_a_bundle_uses_the_resources_it_unpacked(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What PyInstaller sets up: sys._MEIPASS is the bundle's _internal folder."""
    bundled = make_resources(tmp_path / "_internal" / "resources", "bundle")
    clean.setattr(sys, "_MEIPASS", str(tmp_path / "_internal"), raising=False)
    assert resources.resource_dir() == bundled
    path = resources.resource_path("services.json")
    assert json.loads(path.read_text())["marker"] == "bundle"


def test_the_environment_variable_wins(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    override = make_resources(tmp_path / "mine", "override")
    make_resources(tmp_path / "_internal" / "resources", "bundle")
    clean.setattr(sys, "_MEIPASS", str(tmp_path / "_internal"), raising=False)
    clean.setenv(resources.RESOURCES_ENV, str(override))
    assert resources.resource_dir() == override
    assert json.loads(resources.resource_path("services.json").read_text())["marker"] == "override"


def test_a_file_missing_from_the_first_place_comes_from_the_next(
    clean: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    partial = tmp_path / "partial"
    (partial / "icons").mkdir(parents=True)  # icons only, no services.json
    clean.setenv(resources.RESOURCES_ENV, str(partial))
    assert resources.resource_dir() == partial
    assert resources.resource_path("services.json") == REPO / "resources" / "services.json"


def test_missing_everywhere_names_every_place(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean.setenv(resources.RESOURCES_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as error:
        resources.resource_path("icons", "no-such.svg")
    message = str(error.value)
    assert "icons/no-such.svg" in message
    for place in resources.candidates():
        assert str(place) in message


def _copy_package(target: Path) -> None:
    shutil.copytree(PACKAGE, target / "trayapp", ignore=shutil.ignore_patterns("__pycache__"))


def _lookup_in(folder: Path, code: str) -> str:
    """Run `code` with only `folder` on the path (not this checkout), in a clean environment."""
    env = {k: v for k, v in os.environ.items() if k not in (resources.RESOURCES_ENV, "PYTHONPATH")}
    env["PYTHONPATH"] = str(folder)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_source_checkout_elsewhere_finds_its_own_resources(tmp_path: Path) -> None:
    """A fresh checkout (trayapp/ beside resources/) run with PYTHONPATH, no install at all."""
    checkout = tmp_path / "checkout"
    _copy_package(checkout)
    shutil.copytree(REPO / "resources", checkout / "resources")
    out = _lookup_in(
        checkout,
        "import trayapp, trayapp.resources as r; "
        "print(trayapp.__file__); print(r.resource_dir()); "
        "print(r.resource_path('icons', 'app.svg'))",
    )
    package_file, folder, icon = out.splitlines()
    assert Path(package_file).parent == checkout / "trayapp"  # not the editable install
    assert Path(folder) == checkout / "resources"
    assert Path(icon) == checkout / "resources" / "icons" / "app.svg"


def test_an_installed_layout_prefers_the_packaged_copy(tmp_path: Path) -> None:
    """site-packages/trayapp/_resources, as the wheel installs it (the wheel itself is built
    and installed in test_packaging.py): used even with a stray resources/ beside trayapp/."""
    site = tmp_path / "site-packages"
    _copy_package(site)
    shutil.copytree(REPO / "resources", site / "trayapp" / "_resources")
    make_resources(site / "resources", "stray")
    out = _lookup_in(site, "import trayapp.resources as r; print(r.resource_dir())")
    assert Path(out) == site / "trayapp" / "_resources"
