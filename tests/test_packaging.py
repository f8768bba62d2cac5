"""Packaging: the wheel and sdist (`python -m build`), the installed wheel in a fresh venv, the
icon generator, the freedesktop and macOS metadata, and the CI workflow.

The wheel and sdist are built once per module into a temporary folder; the installed wheel
runs `portwatch --version` and `portwatch check PORT --json` against a real listener. The
bundle itself is tested in desktop/test_bundle.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import plistlib
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import missing_part, require_tools
from trayapp import __version__

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
APP_ID = "org.portwatch.PortWatch"
BIN = "Scripts" if sys.platform == "win32" else "bin"
EXE = ".exe" if sys.platform == "win32" else ""


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"portwatch_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would lead Python back to this checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PORTWATCH_RESOURCES")
    }
    env.update(extra)
    return env


# -- wheel and sdist -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`python -m build` (sdist, then the wheel from the sdist), once for this module."""
    if importlib.util.find_spec("build") is None:
        missing_part("the 'build' package is not installed (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [wheel] = out.glob("portwatch-*.whl")
    [sdist] = out.glob("portwatch-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def resource_files() -> list[str]:
    root = REPO / "resources"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.timeout(900)
def test_wheel_carries_the_resources_inside_the_package(dists: dict[str, Path]) -> None:
    assert dists["wheel"].name == f"portwatch-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        for name in resource_files():
            assert f"trayapp/_resources/{name}" in names, name
            original = (REPO / "resources" / name).read_bytes()
            assert wheel.read(f"trayapp/_resources/{name}") == original, name
        assert not any(n.startswith("resources/") for n in names), "resources/ at the top"
        entry_points = wheel.read(f"portwatch-{__version__}.dist-info/entry_points.txt").decode()
    assert "portwatch = trayapp.cli:main" in entry_points
    assert "portwatch-tray = trayapp.cli:tray_main" in entry_points


@pytest.mark.timeout(900)
def test_wheel_has_every_module_of_the_package(dists: dict[str, Path]) -> None:
    """pyproject.toml lists the packages (for the resources mapping): a new subpackage that
    is not listed there would be left out of the wheel silently. This says which."""
    modules = sorted(
        p.relative_to(REPO).as_posix()
        for p in (REPO / "trayapp").rglob("*.py")
        if "__pycache__" not in p.parts
    )
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
    missing = [m for m in modules if m not in names]
    assert not missing, (
        f"not in the wheel: {missing}; add their packages to [tool.setuptools] packages "
        "in pyproject.toml"
    )


@pytest.mark.timeout(900)
def test_sdist_carries_the_resources(dists: dict[str, Path]) -> None:
    top = f"portwatch-{__version__}"
    with tarfile.open(dists["sdist"]) as sdist:
        names = set(sdist.getnames())
    for name in resource_files():
        assert f"{top}/resources/{name}" in names, name
    assert f"{top}/pyproject.toml" in names
    assert f"{top}/trayapp/resources.py" in names


@pytest.mark.timeout(900)
def test_wheel_in_a_fresh_venv_runs_the_cli(
    dists: dict[str, Path], tmp_path: Path, http_listener: tuple[int, subprocess.Popen[bytes]]
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / BIN / f"python{EXE}"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(dists["wheel"])],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"  # not the checkout: nothing to import from by accident
    elsewhere.mkdir()
    env = clean_env(PORTWATCH_HOME=str(tmp_path / "home"))
    portwatch = venv / BIN / f"portwatch{EXE}"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
        )

    version = run(str(portwatch), "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"portwatch {__version__}"

    port, server = http_listener
    check = run(str(portwatch), "check", str(port), "--json")
    assert check.returncode == 0, check.stderr
    [state] = json.loads(check.stdout)
    assert (state["port"], state["state"]) == (port, "listening")
    assert server.pid in [entry["pid"] for entry in state["listeners"]]

    # The resource lookup of an installed wheel: trayapp/_resources in site-packages.
    where = run(
        str(python),
        "-c",
        "import trayapp, trayapp.resources as r; from trayapp.core.services import label_for; "
        "print(trayapp.__file__); print(r.resource_dir()); "
        "print(label_for(60610, os_name='linux'))",
    )
    assert where.returncode == 0, where.stderr
    package_file, folder, label = where.stdout.splitlines()[:3]
    package = Path(package_file).parent
    assert "site-packages" in package.parts and venv in package.parents
    assert Path(folder) == package / "_resources"
    assert label == "Bluesky Queue Server (HTTP API)"  # from the wheel's services.json


# -- icons -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def icons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make_icons.py's output (in a subprocess: it makes its own QGuiApplication)."""
    out = tmp_path_factory.mktemp("icons")
    result = subprocess.run(
        [sys.executable, str(PACKAGING / "make_icons.py"), str(out)],
        env=clean_env(QT_QPA_PLATFORM="offscreen"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_windows_icon_has_every_size_as_png(icons: Path) -> None:
    make_icons = load(PACKAGING / "make_icons.py")
    images = make_icons.read_ico((icons / "portwatch.ico").read_bytes())
    assert sorted(images) == sorted(make_icons.ICO_SIZES)
    for size, data in images.items():
        assert make_icons.png_size(data) == (size, size)


def test_macos_icon_has_every_element_as_png(icons: Path) -> None:
    make_icons = load(PACKAGING / "make_icons.py")
    elements = make_icons.read_icns((icons / "portwatch.icns").read_bytes())
    assert set(elements) == {kind for kind, _ in make_icons.ICNS_TYPES}
    for kind, size in make_icons.ICNS_TYPES:
        assert make_icons.png_size(elements[kind]) == (size, size), kind


def test_linux_icon_theme_sizes(icons: Path) -> None:
    make_icons = load(PACKAGING / "make_icons.py")
    for size in make_icons.HICOLOR_SIZES:
        png = icons / "hicolor" / f"{size}x{size}" / "apps" / "portwatch.png"
        assert make_icons.png_size(png.read_bytes()) == (size, size)
    scalable = icons / "hicolor" / "scalable" / "apps" / "portwatch.svg"
    assert scalable.read_bytes() == (REPO / "resources" / "icons" / "app.svg").read_bytes()


def _pixels(png: Path) -> list[tuple[int, int, int, int]]:
    """RGBA pixels of a PNG, via Qt in a subprocess (keeps this process free of a QGuiApp)."""
    code = (
        "import sys; from PySide6.QtGui import QImage; "
        "i = QImage(sys.argv[1]).convertToFormat(QImage.Format.Format_RGBA8888); "
        "sys.stdout.buffer.write(bytes(i.constBits())[: i.bytesPerLine() * i.height()])"
    )
    data = subprocess.run(
        [sys.executable, "-c", code, str(png)],
        env=clean_env(QT_QPA_PLATFORM="offscreen"),
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    return [struct.unpack_from("4B", data, i) for i in range(0, len(data), 4)]


def test_macos_tray_templates_are_black_with_alpha_and_holes(icons: Path) -> None:
    make_icons = load(PACKAGING / "make_icons.py")
    for state in make_icons.TRAY_STATES:
        one = icons / "macos" / f"{state}Template.png"
        two = icons / "macos" / f"{state}Template@2x.png"
        assert make_icons.png_size(one.read_bytes()) == (22, 22)
        assert make_icons.png_size(two.read_bytes()) == (44, 44)
    pixels = _pixels(icons / "macos" / "allTemplate@2x.png")
    assert all((r, g, b) == (0, 0, 0) for r, g, b, a in pixels if a)
    opaque = sum(1 for *_, a in pixels if a > 200)
    # A disc with the check mark cut out: clearly less than a full disc (pi/4 of the square).
    assert 0.25 * len(pixels) < opaque < 0.65 * len(pixels)


# -- freedesktop and macOS metadata ------------------------------------------------------------


LINUX_ONLY = pytest.mark.linux("the freedesktop tools are Linux programs")


@LINUX_ONLY
def test_desktop_file_is_valid() -> None:
    require_tools("desktop-file-validate")
    path = PACKAGING / "linux" / f"{APP_ID}.desktop"
    result = subprocess.run(
        ["desktop-file-validate", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout
    text = path.read_text(encoding="utf-8")
    assert "Icon=portwatch\n" in text  # make_icons.APP_ID: the hicolor icons' name
    assert "Exec=portwatch tray\n" in text


@LINUX_ONLY
def test_appstream_metainfo_is_valid() -> None:
    require_tools("appstreamcli")
    path = PACKAGING / "linux" / f"{APP_ID}.metainfo.xml"
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = path.read_text(encoding="utf-8")
    assert f"<id>{APP_ID}</id>" in text
    assert f'<launchable type="desktop-id">{APP_ID}.desktop</launchable>' in text
    assert f'<release version="{__version__}"' in text, "add a <release> for this version"


def test_macos_info_plist_hides_the_dock_icon() -> None:
    with (PACKAGING / "macos" / "Info.plist").open("rb") as handle:
        plist = plistlib.load(handle)
    assert plist["LSUIElement"] is True
    assert plist["CFBundleName"] == "Port Watch"


def test_spec_compiles_and_names_the_platform_bits() -> None:
    text = (PACKAGING / "portwatch.spec").read_text(encoding="utf-8")
    compile(text, "portwatch.spec", "exec")
    assert 'BUNDLE_ID = "org.portwatch.PortWatch"' in text
    assert re.search(r"console=False", text), "the Windows tray exe must have no console"
    assert "icons.icns if IS_MACOS else icons.ico" in text


# -- the CI workflow ---------------------------------------------------------------------------


def test_workflow_is_a_valid_github_workflow() -> None:
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    if checker is None:
        missing_part("check-jsonschema is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_covers_three_systems_and_uploads_bundles() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    for runner in ("ubuntu-", "windows-", "macos-"):
        assert runner in text, runner
    assert "actions/upload-artifact" in text
    assert "packaging/build_bundle.py" in text
