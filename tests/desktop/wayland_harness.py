"""Python API over ``wayland.sh``: the Wayland twin of harness.Desktop (sway headless, mako,
waybar's tray or no tray at all, a virtual pointer).

Everything that is not X-specific comes from harness.Desktop unchanged: starting and stopping
the session script, the apps' environment and clean-up, screenshots, the D-Bus log and its
parser, notifications, StatusNotifierItems and their exported menus, finding the tray icon by
its pixels. What differs is reached the Wayland way: pixels with grim, windows through sway's
IPC (``swaymsg -t get_tree``), the pointer through the session's virtual pointer. There is no
keyboard injection: windows are closed as the compositor would close them (``swaymsg kill``).

    with WaylandDesktop().start("waybar") as desktop:
        app = desktop.spawn([sys.executable, "my_tray.py"])   # QT_QPA_PLATFORM=wayland
        area = desktop.wait_for_tray_icon()
        desktop.click(*area.center, button=3)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from .harness import Desktop, DesktopError, Image, Rect, close_to, parse_colour, wait_until

HERE_SCRIPT = Desktop.SCRIPT.with_name("wayland.sh")
WAYLAND_HOSTS = ("waybar", "none")
_PROGRAMS = (
    "bash",
    "sway",
    "swaymsg",
    "setpriv",
    "dbus-daemon",
    "dbus-send",
    "dbus-monitor",
    "mako",
    "grim",
    "python3",
    "ps",
)
WAYLAND_PROGRAMS: dict[str, tuple[str, ...]] = {
    "waybar": (*_PROGRAMS, "waybar"),
    "none": _PROGRAMS,
}
WAYLAND_DEBIAN_PACKAGES = {
    "sway": "sway",
    "swaymsg": "sway",
    "setpriv": "util-linux",
    "mako": "mako-notifier",
    "grim": "grim",
    "waybar": "waybar",
    "python3": "python3",
    "dbus-daemon": "dbus",
    "dbus-send": "dbus",
    "dbus-monitor": "dbus",
    "bash": "bash",
    "ps": "procps",
}
BUTTONS = {1: "left", 2: "middle", 3: "right"}
MAKO_BACKGROUND = "#fff8c4"  # wayland.sh's mako config


def missing_wayland_programs(tray_host: str | None = None) -> list[str]:
    hosts = [tray_host] if tray_host else list(WAYLAND_HOSTS)
    needed = dict.fromkeys(p for h in hosts for p in WAYLAND_PROGRAMS[h])
    return [p for p in needed if shutil.which(p) is None]


class WaylandDesktop(Desktop):
    """A headless Wayland session; see wayland.sh for what it starts and what can be seen."""

    SCRIPT = HERE_SCRIPT
    HOSTS = WAYLAND_HOSTS
    QT_PLATFORM = "wayland"

    def start(self, tray_host: str = "waybar", timeout: float = 60.0) -> WaylandDesktop:
        super().start(tray_host, timeout)
        return self

    @staticmethod
    def missing_programs(tray_host: str) -> list[str]:
        return missing_wayland_programs(tray_host)

    # -- pixels --------------------------------------------------------------------------------

    @property
    def screen_size(self) -> tuple[int, int]:
        if self._screen is None:
            outputs = json.loads(self.run(["swaymsg", "-r", "-t", "get_outputs"]).stdout)
            rect = outputs[0]["rect"]
            self._screen = (int(rect["width"]), int(rect["height"]))
        return self._screen

    def _grab(self, x: int, y: int, w: int, h: int) -> Image:
        """A region inside the screen, via `grim -g ... -t ppm -`."""
        result = subprocess.run(
            ["grim", "-g", f"{x},{y} {w}x{h}", "-t", "ppm", "-"],
            env=self._tool_env(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        data = _ppm_pixels(result.stdout)
        if result.returncode != 0 or data is None or len(data) != w * h * 3:
            raise DesktopError(
                f"grim {w}x{h}+{x}+{y}: rc={result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return Image(x, y, w, h, data)

    # -- the tray ------------------------------------------------------------------------------

    def panel_geometry(self) -> Rect:
        """waybar's bar: the full width of the output, BAR_HEIGHT (wayland.sh) high. A layer
        surface is not in sway's tree, so this comes from the session's own configuration."""
        height = int(self.session_vars.get("BAR_HEIGHT", "0"))
        if height <= 0:
            raise DesktopError("this session has no bar (tray host 'none')")
        return Rect(0, 0, self.screen_size[0], height)

    # -- windows (sway's tree) -------------------------------------------------------------------

    def windows(self) -> list[dict[str, Any]]:
        """Every application window sway manages: dicts with id, name (title), app_id, pid,
        focused, urgent, visible, rect (screen coordinates, incl. sway's title bar: deco_rect)."""
        tree = json.loads(self.run(["swaymsg", "-r", "-t", "get_tree"]).stdout)
        return [node for node in _walk(tree) if node.get("pid") and node.get("type") == "con"]

    def find_windows(
        self,
        name: str | None = None,
        class_: str | None = None,
        pid: int | None = None,
        classname: str | None = None,
        visible: bool = True,
    ) -> list[int]:
        """Container ids of windows matching ALL given criteria: name is a regex on the title,
        class_/classname one on the app_id (Wayland has no WM_CLASS)."""
        found = []
        for node in self.windows():
            app_id = str(node.get("app_id") or "")
            if name is not None and not re.search(name, str(node.get("name") or "")):
                continue
            if class_ is not None and not re.search(class_, app_id):
                continue
            if classname is not None and not re.search(classname, app_id):
                continue
            if pid is not None and node.get("pid") != pid:
                continue
            if visible and not node.get("visible", True):
                continue
            found.append(int(node["id"]))
        return found

    def window(self, con_id: int) -> dict[str, Any]:
        for node in self.windows():
            if node["id"] == con_id:
                return node
        raise DesktopError(f"no window {con_id}")

    def window_geometry(self, wid: int) -> Rect:
        """Where the window's content is on screen (below sway's title bar)."""
        rect = self.window(wid)["rect"]
        return Rect(int(rect["x"]), int(rect["y"]), int(rect["width"]), int(rect["height"]))

    def focused_window(self) -> int | None:
        return next((int(n["id"]) for n in self.windows() if n.get("focused")), None)

    def close_window(self, wid: int) -> None:
        """Ask the window to close, as its title bar's close button would (xdg_toplevel.close)."""
        self.run(["swaymsg", f"[con_id={wid}]", "kill"])

    def popup_menus(self) -> list[int]:
        raise DesktopError("menus are popups of their panel on Wayland: find them by pixels")

    def open_tray_menu(self, icon: Rect, timeout: float = 10.0) -> tuple[Rect, list[Rect]]:
        """Right-click the tray icon and find the menu waybar draws (a popup of the bar, not a
        window): the part of the screen's top-left quarter that changed. Returns its area and
        its text rows, top to bottom. Open it over an empty desktop: a window that redraws
        meanwhile would count as menu."""
        sw, sh = self.screen_size
        region = (0, 0, sw // 2, sh // 2)
        before = self.capture(*region)
        self.click(*icon.center, button=3)
        self.move_pointer(sw - 1, sh - 1)  # the arrow out of the picture; the menu stays open

        def drawn() -> Rect | None:
            box = changed_area(before, self.capture(*region))
            return box if box is not None and box.w > 40 and box.h > 40 else None

        box = wait_until(drawn, timeout, interval=0.2, message="the tray menu drawn")
        time.sleep(0.3)  # GTK draws the popup's rows after its frame
        box = changed_area(before, self.capture(*region)) or box
        return box, self.capture(*box).text_lines()

    def notification_area(self) -> Rect | None:
        """Where mako shows its notifications (top right, its background colour), or None."""
        sw, _sh = self.screen_size
        corner = self.capture(sw // 2, 0, sw - sw // 2, 300)
        background = parse_colour(MAKO_BACKGROUND)
        return corner.bbox(lambda p: close_to(p, background, 6))

    # -- input ----------------------------------------------------------------------------------

    def click(self, x: int, y: int, button: int = 1) -> None:
        """A real pointer click at (x, y) (1 left, 2 middle, 3 right) through the virtual
        pointer."""
        self._script("click", str(x), str(y), BUTTONS.get(button, str(button)))
        self._pointer = (x, y)

    def pointer(self) -> tuple[int, int]:
        """Where the pointer was last sent (no client may ask for the global position)."""
        return getattr(self, "_pointer", (self.screen_size[0] - 1, self.screen_size[1] - 1))

    def move_pointer(self, x: int, y: int) -> None:
        self._script("move", str(x), str(y))
        self._pointer = (x, y)

    def key(self, *keys: str) -> None:
        raise DesktopError("this Wayland session has no virtual keyboard")

    def _script(self, *args: str) -> None:
        result = subprocess.run(
            ["bash", str(self.SCRIPT), *args],
            env=self._script_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise DesktopError(f"wayland.sh {' '.join(args)}: {result.stderr.strip()}")


def changed_area(before: Image, after: Image, tolerance: int = 8) -> Rect | None:
    """Bounding box (screen coordinates) of the pixels that differ between two captures of the
    same region."""
    if (before.x, before.y, before.width, before.height) != (
        after.x,
        after.y,
        after.width,
        after.height,
    ):
        raise ValueError("captures of different regions")
    xs: list[int] = []
    ys: list[int] = []
    a, b, w = before.data, after.data, before.width
    for i in range(0, len(a), 3):
        if max(abs(a[i] - b[i]), abs(a[i + 1] - b[i + 1]), abs(a[i + 2] - b[i + 2])) > tolerance:
            xs.append((i // 3) % w)
            ys.append((i // 3) // w)
    if not xs:
        return None
    x0, y0 = before.x + min(xs), before.y + min(ys)
    return Rect(x0, y0, before.x + max(xs) - x0 + 1, before.y + max(ys) - y0 + 1)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in [*node.get("nodes", []), *node.get("floating_nodes", [])]:
        yield from _walk(child)


def _ppm_pixels(blob: bytes) -> bytes | None:
    """The RGB bytes of a binary PPM (P6, maxval 255), as grim writes it."""
    match = re.match(rb"P6\s+(\d+)\s+(\d+)\s+255\s", blob)
    if match is None:
        return None
    return blob[match.end() :]


__all__ = [
    "WAYLAND_DEBIAN_PACKAGES",
    "WAYLAND_PROGRAMS",
    "WaylandDesktop",
    "changed_area",
    "missing_wayland_programs",
]
