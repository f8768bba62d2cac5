"""Start-up time of the tray app, to its icon visible in a real panel: the PyInstaller bundle
(dist/portwatch) against `python -m trayapp` from this checkout's venv.

Uses the desktop harness (tests/desktop/harness.py: Xvfb + D-Bus + dunst + xfce4-panel). Each
start gets a fresh PORTWATCH_HOME and one watched port on the command line; the clock runs from
just before the process is spawned until the panel shows pixels of its icon (polled from
outside with ImageMagick, so the figures include up to one poll, reported as "poll" below).
Then SIGTERM, and the next start waits until the panel is empty again. Starts alternate
between the two, after one unmeasured warm-up start each (cold disk caches are a different
question). Also times `--version` (the CLI's start-up, no Qt) for both.

    python benchmarks/startup_bench.py             # 7 measured starts each
    python benchmarks/startup_bench.py --runs 3
    python benchmarks/startup_bench.py --build     # build the bundle first if it is stale
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.desktop.harness import Desktop, missing_programs  # noqa: E402

BUILD_SCRIPT = REPO / "packaging" / "build_bundle.py"


def load_builder():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("portwatch_build_bundle", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def clean_env(base: dict[str, str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "PORTWATCH_RESOURCES")}
    env["PORTWATCH_HOME"] = str(home)
    return env


def fresh_home(root: Path, n: int) -> Path:
    home = root / f"home-{n}"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.json").write_text(json.dumps({"ports": []}), encoding="utf-8")
    return home


def time_to_icon(
    desktop: Desktop, argv: list[str], home: Path, timeout: float = 60.0
) -> tuple[float, float]:
    """(seconds from spawn to icon pixels in the panel, seconds one poll took)."""
    if desktop.tray_icon_area() is not None:
        raise RuntimeError("the panel is not empty before the start")
    polls: list[float] = []
    started = time.monotonic()
    proc = desktop.spawn(
        argv,
        env=clean_env(desktop.env, home),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            before = time.monotonic()
            found = desktop.tray_icon_area()
            now = time.monotonic()
            polls.append(now - before)
            if found is not None:
                elapsed = now - started
                break
            if now - started > timeout:
                raise RuntimeError(f"no icon after {timeout:g} s: {' '.join(argv)}")
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}: {' '.join(argv)}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    if code != 0:
        raise RuntimeError(f"exit code {code} after SIGTERM: {' '.join(argv)}")
    desktop.wait_until(lambda: desktop.tray_icon_area() is None, 15, message="an empty panel")
    return elapsed, statistics.median(polls)


def time_command(argv: list[str], home: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        argv,
        env=clean_env(dict(os.environ), home),
        cwd=home,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=60,
    )
    return time.monotonic() - started


def row(name: str, values: list[float]) -> str:
    return (
        f"| {name:<38} | {statistics.median(values):7.2f} | {min(values):6.2f} | "
        f"{max(values):6.2f} | {len(values):2d} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="measured starts of each")
    parser.add_argument("--build", action="store_true", help="build the bundle if it is stale")
    args = parser.parse_args()

    if not sys.platform.startswith("linux"):
        print("startup_bench: the desktop harness is Linux only", file=sys.stderr)
        return 2
    missing = missing_programs("xfce")
    if missing:
        print(f"startup_bench: missing programs: {' '.join(missing)}", file=sys.stderr)
        return 2
    builder = load_builder()
    if builder.is_stale():
        if not args.build:
            print(
                "startup_bench: the bundle is missing or stale: run `make bundle` or pass --build"
            )
            return 2
        builder.build()
    bundle = str(builder.executable())
    size = builder.folder_size(builder.app_dir())

    port = "48123"  # not listening: start-up only, no notification
    starts: dict[str, Callable[[], list[str]]] = {
        "bundle: dist/portwatch/portwatch tray": lambda: [bundle, "tray", port],
        "python -m trayapp tray (.venv)": lambda: [sys.executable, "-m", "trayapp", "tray", port],
    }
    clis = {
        "bundle: portwatch --version": [bundle, "--version"],
        "python -m trayapp --version (.venv)": [sys.executable, "-m", "trayapp", "--version"],
    }
    icon: dict[str, list[float]] = {name: [] for name in starts}
    cli: dict[str, list[float]] = {name: [] for name in clis}
    polls: list[float] = []
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        root = Path(tmp)
        with Desktop(artifacts_dir=root / "artifacts") as desktop:
            n = 0
            for run in range(args.runs + 1):  # run 0 warms up, unmeasured
                for name, argv in starts.items():
                    n += 1
                    seconds, poll = time_to_icon(desktop, argv(), fresh_home(root, n))
                    if run:
                        icon[name].append(seconds)
                        polls.append(poll)
                for name, command in clis.items():
                    n += 1
                    seconds = time_command(command, fresh_home(root, n))
                    if run:
                        cli[name].append(seconds)
                print(f"run {run}{' (warm-up)' if not run else ''} done", file=sys.stderr)

    print(f"Bundle: {builder.app_dir().relative_to(REPO)}, {size / 2**20:.1f} MiB")
    print(f"Machine: {os.cpu_count()} cores; one panel poll took {statistics.median(polls):.3f} s")
    print()
    print(f"| {'start':<38} | median  | min    | max    | n  |")
    print(f"| {'-' * 38} | ------- | ------ | ------ | -- |")
    print(f"| {'**to tray icon visible (s)**':<38} |         |        |        |    |")
    for name, values in icon.items():
        print(row(name, values))
    print(f"| {'**CLI --version, to exit (s)**':<38} |         |        |        |    |")
    for name, values in cli.items():
        print(row(name, values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
