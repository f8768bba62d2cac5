"""The README's pictures, cut from what the end-to-end suite saw on the real desktop
(`make screenshots` runs the tests, then this). Small on purpose: only the part that matters,
as PNG, a few dozen KiB each."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "desktop"
TARGET = REPO / "docs" / "screenshots"
# name in the README: (screenshot the suite took, the region WxH+X+Y of a 1024x768 screen)
PICTURES = {
    "tray-menu-bluesky.png": ("bluesky-2-menu.png", "720x275+0+0"),
    "tray-menu-remote-bluesky.png": ("remote-1-menu.png", "770x270+0+0"),
    # tests/desktop/test_accessibility_desktop.py (windows open at 0,0: no window manager)
    "history-window.png": ("a11y-history.png", "860x600+0+0"),
    "port-window.png": ("a11y-port-window.png", "780x700+0+0"),
}


def main() -> int:
    convert = shutil.which("convert")
    if convert is None:
        print("needs ImageMagick's convert (Debian: imagemagick)", file=sys.stderr)
        return 2
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, (source, region) in PICTURES.items():
        shot = ARTIFACTS / source
        if not shot.is_file():
            print(f"{shot} is missing: run the desktop tests first", file=sys.stderr)
            return 1
        out = TARGET / name
        subprocess.run(
            [convert, str(shot), "-crop", region, "+repage", "-strip", f"PNG8:{out}"], check=True
        )
        print(f"{out.relative_to(REPO)}: {out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
