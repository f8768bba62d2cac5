"""Build the one-folder app for this OS with PyInstaller, check it, and optionally archive it.

    python packaging/build_bundle.py             build dist/portwatch/ (`make bundle`)
    python packaging/build_bundle.py --if-stale  only when its sources changed since the last build
    python packaging/build_bundle.py --archive   also dist/portwatch-<version>-<os>-<arch>.tar.gz
                                                 (.zip on Windows): what CI uploads

After PyInstaller it runs the bundle's `--version` and, on Linux, validates the .desktop file
and the AppStream metainfo (desktop-file-validate, appstreamcli; skipped with a note where
they are not installed, an error under CI=true). A stamp in dist/ records a hash of everything
the bundle is built from, so tests rebuild only a missing or stale bundle.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
SPEC = PACKAGING / "portwatch.spec"
DIST = REPO / "dist"
WORK = REPO / "build" / "pyinstaller"
NAME = "portwatch"
APP_TITLE = "Port Watch"
APP_ID = "org.portwatch.PortWatch"
STAMP = DIST / f".{NAME}-bundle.json"
# What the bundle is built from; a change to any of these makes it stale.
INPUTS = ("trayapp", "resources", "packaging", "pyproject.toml")


class BuildError(RuntimeError):
    pass


def os_tag() -> str:
    return {"win32": "windows", "darwin": "macos"}.get(
        sys.platform, sys.platform.rstrip("0123456789")
    )


def bundle_dir() -> Path:
    """The one-folder app: dist/portwatch (on macOS, the .app holds the same)."""
    return DIST / NAME


def app_dir() -> Path:
    """What a user gets: the .app on macOS, the folder elsewhere."""
    return DIST / f"{APP_TITLE}.app" if sys.platform == "darwin" else bundle_dir()


def executable(tray: bool = False) -> Path:
    """The bundle's CLI (with no command: the tray app); tray=True: the windowed tray program
    (Windows: portwatch-tray.exe; elsewhere the same executable)."""
    if sys.platform == "win32":
        return bundle_dir() / (f"{NAME}-tray.exe" if tray else f"{NAME}.exe")
    if sys.platform == "darwin":
        return app_dir() / "Contents" / "MacOS" / NAME
    return bundle_dir() / NAME


def _version() -> str:
    text = (REPO / "trayapp" / "__init__.py").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise BuildError("no __version__ in trayapp/__init__.py")


def inputs_hash() -> str:
    """A hash of the sources, the spec and the tools: equal hashes, equal bundles."""
    digest = hashlib.sha256()
    for top in INPUTS:
        root = REPO / top
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo", ".md"):
                continue
            digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    digest.update(_tool_versions().encode())
    return digest.hexdigest()


def _tool_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [sys.version, platform.machine()]
    for dist in ("pyinstaller", "PySide6-Essentials", "psutil", "platformdirs", "jeepney"):
        try:
            parts.append(f"{dist}={version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist}=none")
    return " ".join(parts)


def is_stale() -> bool:
    if not executable().is_file():
        return True
    try:
        stamp = json.loads(STAMP.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return stamp.get("inputs") != inputs_hash()


def folder_size(path: Path) -> int:
    """Bytes in all files under path (symlinks not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def pyinstaller() -> None:
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise BuildError(
            "PyInstaller is not installed: pip install -e '.[test]' (or pip install pyinstaller)"
        ) from None
    STAMP.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--log-level=WARN",
        f"--distpath={DIST}",
        f"--workpath={WORK}",
        str(SPEC),
    ]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")  # make_icons renders without a display
    if _run(argv, cwd=REPO, env=env).returncode != 0:
        raise BuildError("PyInstaller failed (see above)")


def _tool(name: str, problems: list[str]) -> str | None:
    found = shutil.which(name)
    if found is None:
        problems.append(f"{name} is not installed, so it was not run")
    return found


def validate_linux(folder: Path) -> list[str]:
    """Check the freedesktop files in the bundle; returns what could not be checked."""
    skipped: list[str] = []
    desktop = folder / "share" / "applications" / f"{APP_ID}.desktop"
    metainfo = folder / "share" / "metainfo" / f"{APP_ID}.metainfo.xml"
    for path in (desktop, metainfo, folder / "share" / "icons" / "hicolor" / "256x256"):
        if not path.exists():
            raise BuildError(f"{path} is missing from the bundle")
    if tool := _tool("desktop-file-validate", skipped):
        result = _run([tool, str(desktop)], capture_output=True)
        if result.returncode != 0 or result.stdout.strip():
            raise BuildError(
                f"desktop-file-validate {desktop.name}:\n{result.stdout}{result.stderr}"
            )
    if tool := _tool("appstreamcli", skipped):
        result = _run([tool, "validate", "--no-net", str(metainfo)], capture_output=True)
        if result.returncode != 0:
            raise BuildError(
                f"appstreamcli validate {metainfo.name}:\n{result.stdout}{result.stderr}"
            )
    return skipped


def smoke_test() -> None:
    exe = executable()
    result = _run([str(exe), "--version"], capture_output=True, timeout=120)
    if result.returncode != 0 or _version() not in result.stdout:
        raise BuildError(
            f"{exe} --version exited {result.returncode}: {result.stdout}{result.stderr}"
        )
    print(result.stdout.strip())


def archive() -> Path:
    """dist/portwatch-<version>-<os>-<arch>.tar.gz (.zip on Windows) of what a user gets."""
    base = DIST / f"{NAME}-{_version()}-{os_tag()}-{platform.machine().lower()}"
    source = app_dir()
    if sys.platform == "win32":
        target = base.with_suffix(".zip")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as handle:
            for path in sorted(source.rglob("*")):
                handle.write(path, Path(NAME) / path.relative_to(source))
    else:
        target = Path(f"{base}.tar.gz")
        with tarfile.open(target, "w:gz", compresslevel=6) as handle:
            handle.add(source, arcname=source.name)  # keeps modes and the .app's symlinks
    return target


def build(make_archive: bool = False) -> dict[str, object]:
    started = time.monotonic()
    pyinstaller()
    skipped = validate_linux(bundle_dir()) if sys.platform.startswith("linux") else []
    for note in skipped:
        if os.environ.get("CI", "").lower() == "true":
            raise BuildError(f"CI should provide it: {note}")
        print(f"note: {note}")
    smoke_test()
    info: dict[str, object] = {
        "inputs": inputs_hash(),
        "version": _version(),
        "executable": str(executable().relative_to(REPO)),
        "size_bytes": folder_size(app_dir()),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    if make_archive:
        target = archive()
        info["archive"] = str(target.relative_to(REPO))
        info["archive_bytes"] = target.stat().st_size
    STAMP.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One build at a time in this checkout (two test runs at once would clobber dist/)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with (WORK / "build.lock").open("w") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no fcntl; builds there are one at a time anyway
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built() -> bool:
    """Build unless an up-to-date bundle exists (checked again under the lock, since another
    process may have just built it); True when this call built it."""
    if not is_stale():
        return False
    with build_lock():
        if not is_stale():
            return False
        build()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--if-stale", action="store_true", help="skip an up-to-date bundle")
    parser.add_argument("--archive", action="store_true", help="also write a .tar.gz/.zip")
    args = parser.parse_args(argv)
    try:
        if args.if_stale and not is_stale():
            print(f"{app_dir()} is up to date")
            if not args.archive:
                return 0
            info = json.loads(STAMP.read_text(encoding="utf-8"))
            target = archive()
            info.update(archive=str(target.relative_to(REPO)), archive_bytes=target.stat().st_size)
            STAMP.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        else:
            with build_lock():
                info = build(make_archive=args.archive)
    except BuildError as exc:
        print(f"build_bundle: {exc}", file=sys.stderr)
        return 1
    size = int(info["size_bytes"])  # type: ignore[call-overload]
    print(f"bundle {app_dir().relative_to(REPO)}: {size / 2**20:.1f} MiB")
    if "archive" in info:
        print(f"archive {info['archive']}: {int(info['archive_bytes']) / 2**20:.1f} MiB")  # type: ignore[call-overload]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
