"""Python API over ``session.sh``: a real headless desktop (Xvfb, D-Bus, dunst, a tray host).

The app under test runs as a separate process started with :attr:`Desktop.env` (or
:meth:`Desktop.spawn`); this module never imports Qt. Everything is observed from outside, the
way a user would see it: screen pixels (ImageMagick ``import``), X windows (``xdotool``,
``xprop``), the D-Bus traffic logged by ``dbus-monitor`` and dunst's own
control interface (history, count displayed).

    with Desktop().start("xfce") as desktop:
        app = desktop.spawn([sys.executable, "my_tray.py"])
        area = desktop.wait_for_tray_icon()
        desktop.click(*area.center, button=3)
        desktop.screenshot("menu")

All waits poll against a deadline; :meth:`Desktop.stop` kills everything the session and
:meth:`Desktop.spawn` started, also after a failed start.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

HERE = Path(__file__).resolve().parent
SESSION_SH = HERE / "session.sh"
REPO_ROOT = HERE.parents[1]
DEFAULT_ARTIFACTS = REPO_ROOT / "test-artifacts" / "desktop"

TRAY_HOSTS = ("xfce", "trayer")
_COMMON_PROGRAMS = (
    "bash",
    "Xvfb",
    "xdpyinfo",
    "dbus-daemon",
    "dbus-send",
    "dbus-monitor",
    "dunst",
    "xdotool",
    "xprop",
    "import",
    "ps",
    "timeout",
)
REQUIRED_PROGRAMS: dict[str, tuple[str, ...]] = {
    "xfce": (*_COMMON_PROGRAMS, "xfce4-panel"),
    "trayer": (*_COMMON_PROGRAMS, "trayer"),
}
# Which Debian package provides each program (for error messages and CI).
DEBIAN_PACKAGES = {
    "bash": "bash",
    "Xvfb": "xvfb",
    "xdpyinfo": "x11-utils",
    "xprop": "x11-utils",
    "dbus-daemon": "dbus",
    "dbus-send": "dbus",
    "dbus-monitor": "dbus",
    "dunst": "dunst",
    "xdotool": "xdotool",
    "import": "imagemagick",
    "ps": "procps",
    "timeout": "coreutils",
    "xfce4-panel": "xfce4-panel",
    "trayer": "trayer",
}

# Session variables that must not leak from the test process into the desktop or its apps.
_SCRUBBED_VARS = (
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "DBUS_SESSION_BUS_ADDRESS",
    "DBUS_STARTER_ADDRESS",
    "DBUS_STARTER_BUS_TYPE",
    "SESSION_MANAGER",
    "XDG_SESSION_TYPE",
    "XDG_SESSION_DESKTOP",
    "XDG_CURRENT_DESKTOP",
    "DESKTOP_SESSION",
    "QT_QPA_PLATFORM",
    "QT_QPA_PLATFORMTHEME",
    "DESKTOP_SESSION_OWNER",
    "DESKTOP_HARNESS_APP",
)
APP_MARKER = "DESKTOP_HARNESS_APP"  # env var set on every app started with Desktop.env
SESSION_MARKER = "DESKTOP_SESSION_OWNER"  # set by session.sh on the session's own processes

RGB = tuple[int, int, int]
T = TypeVar("T")


class DesktopError(RuntimeError):
    """The desktop could not do what was asked (start, a tool failed...)."""


class DesktopTimeout(DesktopError, TimeoutError):
    """A wait_* ran out of time; the message says what was awaited and the last value seen."""


def missing_programs(tray_host: str | None = None) -> list[str]:
    """Programs the harness needs (for one tray host, or for all) that are not on PATH."""
    hosts = [tray_host] if tray_host else list(TRAY_HOSTS)
    needed = dict.fromkeys(p for h in hosts for p in REQUIRED_PROGRAMS[h])
    return [p for p in needed if shutil.which(p) is None]


def parse_colour(colour: str | Sequence[int]) -> RGB:
    """'#22c55e', '22c55e' or (34, 197, 94) -> (34, 197, 94)."""
    if isinstance(colour, str):
        text = colour.strip().lstrip("#")
        if not re.fullmatch(r"[0-9a-fA-F]{6}", text):
            raise ValueError(f"not a #rrggbb colour: {colour!r}")
        return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    r, g, b = colour
    return (int(r), int(g), int(b))


def close_to(a: RGB, b: RGB, tolerance: int) -> bool:
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(a[2] - b[2])) <= tolerance


class Rect(NamedTuple):
    x: int
    y: int
    w: int
    h: int

    @property
    def center(self) -> tuple[int, int]:
        return (self.x + self.w // 2, self.y + self.h // 2)

    def contains(self, x: int, y: int) -> bool:
        return self.x <= x < self.x + self.w and self.y <= y < self.y + self.h


@dataclass(frozen=True)
class Image:
    """Raw 8-bit RGB pixels of a screen region whose top-left corner is at (x, y)."""

    x: int
    y: int
    width: int
    height: int
    data: bytes = field(repr=False)

    @property
    def rect(self) -> Rect:
        return Rect(self.x, self.y, self.width, self.height)

    def pixel(self, x: int, y: int) -> RGB:
        """Colour at (x, y) relative to this image's top-left corner."""
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise IndexError(f"({x}, {y}) outside {self.width}x{self.height}")
        i = (y * self.width + x) * 3
        return (self.data[i], self.data[i + 1], self.data[i + 2])

    def pixels(self) -> Iterator[RGB]:
        d = self.data
        for i in range(0, len(d), 3):
            yield (d[i], d[i + 1], d[i + 2])

    def colours(self) -> Counter[RGB]:
        """How many pixels of each colour."""
        return Counter(self.pixels())

    def count(self, colour: str | Sequence[int], tolerance: int = 24) -> int:
        want = parse_colour(colour)
        return sum(1 for p in self.pixels() if close_to(p, want, tolerance))

    def fraction(self, colour: str | Sequence[int], tolerance: int = 24) -> float:
        """Share of pixels within `tolerance` (per channel) of `colour`."""
        total = self.width * self.height
        return self.count(colour, tolerance) / total if total else 0.0

    def dominant(self) -> RGB:
        """The most common colour."""
        return self.colours().most_common(1)[0][0]

    def edge_colour(self) -> RGB:
        """The most common colour along the image's edges (a panel's background)."""
        w, h = self.width, self.height
        edge = [(x, y) for x in range(w) for y in {0, h - 1}]
        edge += [(x, y) for y in range(1, h - 1) for x in {0, w - 1}]
        return Counter(self.pixel(x, y) for x, y in edge).most_common(1)[0][0]

    def bbox(self, predicate: Callable[[RGB], bool]) -> Rect | None:
        """Bounding box (screen coordinates) of the pixels for which predicate is true."""
        xs: list[int] = []
        ys: list[int] = []
        for yy in range(self.height):
            for xx in range(self.width):
                if predicate(self.pixel(xx, yy)):
                    xs.append(xx)
                    ys.append(yy)
        if not xs:
            return None
        return Rect(
            self.x + min(xs), self.y + min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1
        )

    def text_lines(self, max_luma: int = 110) -> list[Rect]:
        """Where dark 'ink' sits enclosed by lighter pixels, grouped into horizontal bands (one
        per line of text), in screen coordinates. Dark pixels connected to the image's edge
        (the black root window around a shaped balloon, dark frames) are not ink."""
        w, h = self.width, self.height
        d = self.data
        dark = [
            (d[i] * 299 + d[i + 1] * 587 + d[i + 2] * 114) // 1000 <= max_luma
            for i in range(0, len(d), 3)
        ]
        outside = [False] * (w * h)
        stack = [
            i for i in range(w * h) if dark[i] and (i % w in (0, w - 1) or i // w in (0, h - 1))
        ]
        for i in stack:
            outside[i] = True
        while stack:
            i = stack.pop()
            x, y = i % w, i // w
            for nx, ny in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)):
                j = ny * w + nx
                if 0 <= nx < w and 0 <= ny < h and dark[j] and not outside[j]:
                    outside[j] = True
                    stack.append(j)
        rows: dict[int, list[int]] = {}
        for i in range(w * h):
            if dark[i] and not outside[i]:
                rows.setdefault(i // w, []).append(i % w)
        bands: list[Rect] = []
        group: list[int] = []
        for y in sorted(rows):
            if group and y > group[-1] + 1:
                bands.append(self._band(group, rows))
                group = []
            group.append(y)
        if group:
            bands.append(self._band(group, rows))
        return bands

    def _band(self, ys: list[int], rows: dict[int, list[int]]) -> Rect:
        xs = [x for y in ys for x in rows[y]]
        return Rect(self.x + min(xs), self.y + ys[0], max(xs) - min(xs) + 1, ys[-1] - ys[0] + 1)

    def crop(self, x: int, y: int, w: int, h: int) -> Image:
        """Sub-image; x, y relative to this image."""
        x, y = max(0, x), max(0, y)
        w, h = max(0, min(w, self.width - x)), max(0, min(h, self.height - y))
        rows = [
            self.data[((y + r) * self.width + x) * 3 : ((y + r) * self.width + x + w) * 3]
            for r in range(h)
        ]
        return Image(self.x + x, self.y + y, w, h, b"".join(rows))

    def differing_pixels(self, other: Image, tolerance: int = 8) -> int:
        """How many pixels differ by more than `tolerance` from the same-size `other`."""
        if (self.width, self.height) != (other.width, other.height):
            raise ValueError("images differ in size")
        return sum(
            1
            for a, b in zip(self.pixels(), other.pixels(), strict=True)
            if not close_to(a, b, tolerance)
        )

    def save_png(self, path: Path) -> Path:
        """Write as PNG (stdlib only), e.g. to keep a crop next to the screenshots."""
        import struct
        import zlib

        def chunk(kind: bytes, body: bytes) -> bytes:
            crc = zlib.crc32(kind + body) & 0xFFFFFFFF
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

        stride = self.width * 3
        raw = b"".join(b"\0" + self.data[r * stride : (r + 1) * stride] for r in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path


# ----------------------------------------------------------------------------------------------
# dbus-monitor / dbus-send --print-reply text format


@dataclass
class DBusMessage:
    kind: str  # "method call", "method return", "signal", "error"
    header: dict[str, str]
    args: list[Any]

    @property
    def interface(self) -> str | None:
        return self.header.get("interface")

    @property
    def member(self) -> str | None:
        return self.header.get("member")

    @property
    def sender(self) -> str | None:
        return self.header.get("sender")


class _DictEntry(tuple):  # type: ignore[type-arg]
    """(key, value) of a D-Bus dict entry; arrays of these become Python dicts."""


_HEADER_RE = re.compile(
    r"^(method call|method return|signal|error) (time=[0-9.]+ sender=.*)$", re.M
)
_VALUE_START = (
    r"(?:string \"|object path \"|signature \"|(?:u?int(?:16|32|64)|double|byte|boolean) "
    r"|variant |array |dict entry\(|struct \{|file descriptor|[\]\)\}])"
)
# What may follow the closing quote of a string: the next value/closer, a new message, or the end.
_AFTER_STRING_RE = re.compile(
    r"\"\n(?:(?P<indent> *)"
    + _VALUE_START
    + r"|(?:method call|method return|signal|error) time=[0-9.]+ sender=|$)"
)
_SCALAR_RE = re.compile(r"(u?int(?:16|32|64)|byte|double|boolean) ([^\s]+)[ \t]*\n?")


class _Parser:
    """Parses the values of one message. dbus-monitor prints strings raw (no escaping), so a
    string ends at the first `"` + newline that is followed by something that can follow a value
    at an indentation no deeper than the string's own."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\n":
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def expect(self, literal: str) -> None:
        self.skip_space()
        if not self.peek(literal):
            raise ValueError(f"expected {literal!r} at {self.text[self.pos : self.pos + 40]!r}")
        self.pos += len(literal)

    def quoted(self, depth: int) -> str:
        # self.pos is just after the opening quote
        search = self.pos
        while True:
            m = _AFTER_STRING_RE.search(self.text, search)
            if m is None:
                if self.text.endswith('"', self.pos):
                    value = self.text[self.pos : -1]
                    self.pos = len(self.text)
                    return value
                raise ValueError("unterminated string")
            indent = m.group("indent")
            if indent is None or len(indent) <= 3 * depth:
                value = self.text[self.pos : m.start()]
                self.pos = m.start() + 2  # past the quote and newline
                return value
            search = m.start() + 1

    def value(self, depth: int) -> Any:
        self.skip_space()
        t = self.text
        for prefix in ('string "', 'object path "', 'signature "'):
            if self.peek(prefix):
                self.pos += len(prefix)
                return self.quoted(depth)
        if self.peek("variant"):
            self.pos += len("variant")
            return self.value(depth + 1)
        if self.peek("array of bytes"):
            self.pos += len("array of bytes")
            self.skip_space()
            if self.peek('"'):  # printable ASCII only, so on one line; maybe ` + \0` after
                line_end = t.find("\n", self.pos)
                line_end = len(t) if line_end < 0 else line_end
                line, self.pos = t[self.pos + 1 : line_end], line_end + 1
                nul = line.endswith(" + \\0")
                line = line.removesuffix(" + \\0").removesuffix('"')
                return line.encode("latin-1", errors="replace") + (b"\0" if nul else b"")
            self.expect("[")
            end = t.index("]", self.pos)
            hexdigits = re.sub(r"[^0-9a-fA-F]", "", t[self.pos : end])
            self.pos = end + 1
            return bytes.fromhex(hexdigits)
        if self.peek("array ["):
            self.pos += len("array [")
            items = self.items("]", depth)
            if items and all(isinstance(i, _DictEntry) for i in items):
                return {k: v for k, v in items}
            return items
        if self.peek("dict entry("):
            self.pos += len("dict entry(")
            items = self.items(")", depth)
            if len(items) != 2:
                raise ValueError("dict entry without key and value")
            return _DictEntry(items)
        if self.peek("struct {"):
            self.pos += len("struct {")
            return tuple(self.items("}", depth))
        if self.peek("file descriptor"):
            line_end = t.find("\n", self.pos)
            self.pos = len(t) if line_end < 0 else line_end + 1
            return None
        m = _SCALAR_RE.match(t, self.pos)
        if m is None:
            raise ValueError(f"unknown value at {t[self.pos : self.pos + 40]!r}")
        self.pos = m.end()
        kind, raw = m.groups()
        if kind == "boolean":
            return raw == "true"
        if kind == "double":
            return float(raw)
        return int(raw)

    def items(self, closer: str, depth: int) -> list[Any]:
        items: list[Any] = []
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise ValueError(f"missing {closer!r}")
            if self.peek(closer):
                self.pos += 1
                return items
            items.append(self.value(depth + 1))


def _parse_header(line: str) -> dict[str, str]:
    line = line.replace("(null destination)", "(null)")
    return {k: v for k, v in re.findall(r"([a-z_]+)=([^\s;]+)", line)}


def parse_dbus_text(text: str) -> list[DBusMessage]:
    """Parse dbus-monitor's (or dbus-send --print-reply's) default text output into messages.

    Variants are unwrapped, arrays become lists (dicts for arrays of dict entries), structs
    tuples, byte arrays bytes. A message cut short at the end (log still being written) is left
    out; one that cannot be parsed is kept with the raw text as its only argument."""
    messages: list[DBusMessage] = []
    heads = list(_HEADER_RE.finditer(text))
    for n, head in enumerate(heads):
        body_end = heads[n + 1].start() if n + 1 < len(heads) else len(text)
        body = text[head.end() : body_end]
        parser = _Parser(body)
        args: list[Any] = []
        try:
            while not parser.at_end():
                args.append(parser.value(1))
        except (ValueError, IndexError):
            if n + 1 == len(heads):
                break  # probably incomplete: the writer has not finished it yet
            args = [body]
        messages.append(DBusMessage(head.group(1), _parse_header(head.group(2)), args))
    return messages


def notification_from_message(msg: DBusMessage) -> dict[str, Any] | None:
    """org.freedesktop.Notifications.Notify(susssasa{sv}i) call -> dict, else None."""
    if msg.kind != "method call" or msg.member != "Notify":
        return None
    if msg.interface != "org.freedesktop.Notifications" or len(msg.args) != 8:
        return None
    app_name, replaces_id, app_icon, summary, body, actions, hints, expire = msg.args
    actions = list(actions) if isinstance(actions, list) else []
    return {
        "app_name": app_name,
        "replaces_id": replaces_id,
        "app_icon": app_icon,
        "summary": summary,
        "body": body,
        "actions": actions,  # flat list as sent: [key, label, key, label, ...]
        "action_labels": dict(zip(actions[0::2], actions[1::2], strict=False)),
        "hints": hints if isinstance(hints, dict) else {},
        "expire_timeout": expire,
        "sender": msg.sender,
        "serial": msg.header.get("serial"),
        "time": float(msg.header.get("time", "0") or 0),
    }


def wait_until(
    fn: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.1,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call fn until it returns something truthy and return that; DesktopTimeout after timeout.
    Exceptions of the `ignore` types count as 'not yet' (the last one is chained)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    error: BaseException | None = None
    while True:
        try:
            last = fn()
            error = None
            if last:
                return last
        except ignore as exc:
            error = exc
        if time.monotonic() >= deadline:
            raise DesktopTimeout(
                f"timed out after {timeout:g}s waiting for {message}; last: {last!r}"
            ) from error
        time.sleep(interval)


# ----------------------------------------------------------------------------------------------


class Desktop:
    """One headless desktop session (see session.sh). Start it, run apps with `env`, observe.

    The X11 desktop; wayland_harness.WaylandDesktop is its Wayland twin, which changes only the
    class attributes below and how pixels, windows and the pointer are reached."""

    SCRIPT = SESSION_SH  # the session script: up HOST | down | shot NAME DIR
    HOSTS: tuple[str, ...] = TRAY_HOSTS
    QT_PLATFORM = "xcb"  # QT_QPA_PLATFORM for the apps under test

    def __init__(self, artifacts_dir: Path | str | None = None, keep_state: bool = False) -> None:
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir else DEFAULT_ARTIFACTS
        self.keep_state = keep_state
        self.state_dir: Path | None = None
        self.tray_host: str | None = None
        self._session_vars: dict[str, str] = {}
        self._apps: list[subprocess.Popen[Any]] = []
        self._screen: tuple[int, int] | None = None
        self._shots = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._session_vars)

    def start(
        self, tray_host: str = "xfce", timeout: float = 60.0, *, notify_activation: bool = True
    ) -> Desktop:
        """Start Xvfb, a private session bus, dunst and the tray host ('xfce' or 'trayer').
        With notify_activation=False the bus cannot start a notification server on demand, so
        a killed dunst stays gone until start_part("dunst")."""
        if self.state_dir is not None:
            raise DesktopError("already started; stop() first")
        if tray_host not in self.HOSTS:
            raise ValueError(f"tray_host must be one of {self.HOSTS}, not {tray_host!r}")
        missing = self.missing_programs(tray_host)
        if missing:
            raise DesktopError(f"missing programs: {' '.join(missing)}")
        self.tray_host = tray_host
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"desktop-{tray_host}-"))
        try:
            env = self._script_env()
            env["NOTIFY_ACTIVATION"] = "yes" if notify_activation else "no"
            result = subprocess.run(
                ["bash", str(self.SCRIPT), "up", tray_host],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if result.returncode != 0:
                raise DesktopError(
                    f"{self.SCRIPT.name} up {tray_host} failed:\n{result.stderr.strip()}"
                )
            self._session_vars = self._read_env_file(self.state_dir / "env")
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise DesktopError(f"{self.SCRIPT.name} up {tray_host} took over {timeout:g}s") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the apps started with spawn(), then everything session.sh started. Idempotent."""
        errors: list[str] = []
        for proc in self._apps:
            _terminate(proc)
        self._apps.clear()
        state = self.state_dir
        if state is not None:
            session_pids = _read_pids(state / "pids")
            if (state / "pids").exists():
                try:
                    subprocess.run(
                        ["bash", str(self.SCRIPT), "down"],
                        env=self._script_env(),
                        capture_output=True,
                        timeout=30,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    errors.append(f"{self.SCRIPT.name} down timed out")
            # Whatever survived (down timed out, or failed mid-way): kill hard, by PID.
            leftovers = [p for p in session_pids if _alive(p)]
            leftovers += _pids_with_env(SESSION_MARKER, str(state))
            leftovers += _pids_with_env(APP_MARKER, str(state))
            for pid in dict.fromkeys(leftovers):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            self._keep_logs(state)
            if not self.keep_state:
                shutil.rmtree(state, ignore_errors=True)
        self.state_dir = None
        self._session_vars = {}
        self._screen = None
        if errors:
            raise DesktopError("; ".join(errors))

    def __enter__(self) -> Desktop:
        if self.state_dir is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def missing_programs(tray_host: str) -> list[str]:
        return missing_programs(tray_host)

    # -- environment and processes -------------------------------------------------------------

    @property
    def session_vars(self) -> dict[str, str]:
        """Only the session's variables: DISPLAY, DBUS_SESSION_BUS_ADDRESS, HOME, XDG_*, ..."""
        self._require_running()
        return dict(self._session_vars)

    @property
    def env(self) -> dict[str, str]:
        """Complete environment for an app under test: this process's environment without its
        display/bus/Qt platform settings (no inherited QT_QPA_PLATFORM=offscreen), plus the
        session's DISPLAY, DBUS_SESSION_BUS_ADDRESS, HOME, XDG_* dirs and QT_QPA_PLATFORM=xcb."""
        env = self._tool_env()
        assert self.state_dir is not None
        env[APP_MARKER] = str(self.state_dir)  # lets stop()/stray_processes() find its processes
        return env

    def spawn(
        self, argv: Sequence[str], env: dict[str, str] | None = None, **popen_kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start an app with `self.env` (+ `env` overrides); stop() ends it if still running."""
        full_env = self.env
        full_env.update(env or {})
        proc: subprocess.Popen[Any] = subprocess.Popen(list(argv), env=full_env, **popen_kwargs)
        self._apps.append(proc)
        return proc

    def run(
        self, argv: Sequence[str], timeout: float = 15.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command (xdotool, dunstctl, ...) inside the session; output as text."""
        result = subprocess.run(
            list(argv), env=self._tool_env(), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise DesktopError(
                f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def part_pid(self, part: str) -> int | None:
        """PID of a running part of the session ('dunst', 'xfce4-panel', 'dbus', 'xvfb')."""
        self._require_running()
        assert self.state_dir is not None
        pid = None
        with contextlib.suppress(OSError):
            for line in (self.state_dir / "pids.named").read_text().splitlines():
                name, _, number = line.partition(" ")
                if name == part and number.isdigit():
                    pid = int(number)
        return pid if pid is not None and _alive(pid) else None

    def kill_part(self, part: str) -> int:
        """Kill 'dunst' or 'xfce4-panel' by its PID (SIGTERM, then SIGKILL) and wait until it is
        gone; returns the PID it had."""
        pid = self.part_pid(part)
        if pid is None:
            raise DesktopError(f"{part} is not running")
        self._session_script("kill", part)
        return pid

    def start_part(self, part: str) -> int:
        """Start 'dunst' or 'xfce4-panel' again and wait until it serves; returns its PID."""
        self._session_script("start", part)
        pid = self.part_pid(part)
        if pid is None:
            raise DesktopError(f"{part} did not stay up")
        return pid

    def _session_script(self, *args: str, timeout: float = 60.0) -> None:
        result = subprocess.run(
            ["bash", str(SESSION_SH), *args],
            env=self._script_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise DesktopError(f"session.sh {' '.join(args)} failed:\n{result.stderr.strip()}")

    def bus_has(self, name: str) -> bool:
        """Whether a name (org.freedesktop.Notifications, ...) has an owner on the session bus."""
        (answer,) = self.dbus_call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            f"string:{name}",
        )
        return bool(answer)

    def stray_processes(self) -> list[int]:
        """PIDs of live processes started with `env` (apps under test and their children)."""
        self._require_running()
        assert self.state_dir is not None
        return _pids_with_env(APP_MARKER, str(self.state_dir))

    # -- pixels --------------------------------------------------------------------------------

    def screenshot(self, name: str) -> Path:
        """Whole screen as PNG: <repo>/test-artifacts/desktop/<name>.png (git-ignored)."""
        self._require_running()
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "shot"
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        path = self.artifacts_dir / f"{safe}.png"
        path.unlink(missing_ok=True)
        result = subprocess.run(
            ["bash", str(self.SCRIPT), "shot", safe, str(self.artifacts_dir)],
            env=self._script_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0 or not path.exists():
            raise DesktopError(f"screenshot failed: {result.stderr.strip()}")
        return path

    @property
    def screen_size(self) -> tuple[int, int]:
        if self._screen is None:
            w, h = self.run(["xdotool", "getdisplaygeometry"]).stdout.split()
            self._screen = (int(w), int(h))
        return self._screen

    def capture(self, x: int, y: int, w: int, h: int) -> Image:
        """Pixels of a screen region, clipped to the screen."""
        sw, sh = self.screen_size
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(sw, x + w), min(sh, y + h)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"region {w}x{h}+{x}+{y} is off screen")
        return self._grab(x0, y0, x1 - x0, y1 - y0)

    region_pixels = capture

    def _grab(self, x: int, y: int, w: int, h: int) -> Image:
        """A region inside the screen, via `import -crop ... rgb:-`."""
        result = subprocess.run(
            ["import", "-window", "root", "-crop", f"{w}x{h}+{x}+{y}", "-depth", "8", "rgb:-"],
            env=self._tool_env(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0 or len(result.stdout) != w * h * 3:
            raise DesktopError(
                f"import {w}x{h}+{x}+{y}: {len(result.stdout)} bytes, rc={result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return Image(x, y, w, h, result.stdout)

    def pixel(self, x: int, y: int) -> RGB:
        """Colour of one screen pixel as (r, g, b)."""
        return self.capture(x, y, 1, 1).pixel(0, 0)

    # -- the tray ------------------------------------------------------------------------------

    def panel_geometry(self) -> Rect:
        """Where the tray host's panel is: xfce4-panel's strip, or trayer's window."""
        cls = "xfce4-panel" if self.tray_host == "xfce" else "trayer"
        rects = [self.window_geometry(w) for w in self.find_windows(class_=cls)]
        rects = [r for r in rects if r.w > 0 and r.h > 0]
        if not rects:
            raise DesktopError(f"no visible {cls} window")
        return max(rects, key=lambda r: r.w * r.h)

    def tray_icon_area(self, min_size: int = 4, tolerance: int = 8) -> Rect | None:
        """Bounding box of the first (leftmost) tray icon, found by scanning the panel for
        pixels that differ from its background (the commonest colour along its edges); None if
        the panel is empty. On xfce with one icon this is Rect(1, 5, 22, 22), centre (12, 16);
        on trayer (top right) Rect(1001, 5, 22, 22), inside the 22x30 XEmbed icon window."""
        rect = self.panel_geometry()
        if rect.w < min_size or rect.h < min_size:
            return None  # trayer shrinks to a sliver when it holds no icon
        panel = self.capture(*rect)
        bg = panel.edge_colour()
        columns = [
            any(not close_to(panel.pixel(x, y), bg, tolerance) for y in range(panel.height))
            for x in range(panel.width)
        ]
        runs: list[tuple[int, int]] = []
        start = None
        for x, used in enumerate([*columns, False]):
            if used and start is None:
                start = x
            elif not used and start is not None:
                runs.append((start, x))
                start = None
        for x0, x1 in runs:
            if x1 - x0 < min_size:
                continue
            part = panel.crop(x0, 0, x1 - x0, panel.height)
            box = part.bbox(lambda p: not close_to(p, bg, tolerance))
            if box is not None and box.h >= min_size:
                return box
        return None

    def wait_for_tray_icon(self, timeout: float = 15.0) -> Rect:
        """Wait for tray_icon_area() to find an icon; returns its area."""
        return wait_until(
            self.tray_icon_area, timeout, message="a tray icon in the panel", ignore=(DesktopError,)
        )

    def tray_icon_fraction(self, colour: str | Sequence[int], tolerance: int = 40) -> float:
        """Share of the first tray icon's pixels close to `colour` (0.0 when there is no icon)."""
        area = self.tray_icon_area()
        return self.capture(*area).fraction(colour, tolerance) if area else 0.0

    def wait_for_tray_colour(
        self,
        colour: str | Sequence[int],
        timeout: float = 15.0,
        tolerance: int = 40,
        min_fraction: float = 0.5,
    ) -> Rect:
        """Wait until the first tray icon is mostly `colour`; returns its area. This also waits
        out xfce's attention icon (drawn instead of the app's while a notification shows)."""

        def check() -> Rect | None:
            area = self.tray_icon_area()
            if area and self.capture(*area).fraction(colour, tolerance) >= min_fraction:
                return area
            return None

        return wait_until(
            check,
            timeout,
            interval=0.15,
            message=f"tray icon coloured {colour}",
            ignore=(DesktopError,),
        )

    # -- D-Bus and notifications -----------------------------------------------------------------

    def dbus_log(self) -> str:
        """What dbus-monitor logged so far (Notifications, StatusNotifierWatcher/Item, dbusmenu)."""
        self._require_running()
        assert self.state_dir is not None
        return (self.state_dir / "dbus-monitor.log").read_text(errors="replace")

    def dbus_messages(
        self, interface: str | None = None, member: str | None = None
    ) -> list[DBusMessage]:
        return [
            m
            for m in parse_dbus_text(self.dbus_log())
            if (interface is None or m.interface == interface)
            and (member is None or m.member == member)
        ]

    def notifications(self) -> list[dict[str, Any]]:
        """Every org.freedesktop.Notifications.Notify call so far, oldest first: app_name,
        replaces_id, app_icon, summary, body, actions, action_labels, hints, expire_timeout,..."""
        found = (notification_from_message(m) for m in self.dbus_messages())
        return [n for n in found if n is not None]

    def wait_for_notification(
        self, predicate: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """First notification (see notifications()) matching predicate; waits for it."""

        def find() -> dict[str, Any] | None:
            return next(
                (n for n in self.notifications() if predicate is None or predicate(n)), None
            )

        return wait_until(find, timeout, message="a matching Notify call")

    def dunst_history(self) -> list[dict[str, Any]]:
        """Notifications dunst has closed (expired/dismissed), newest first: dicts with summary,
        body, appname, id, urgency, ... (dunst's NotificationListHistory, what `dunstctl history`
        prints, read with dbus-send: no busctl needed). Ones still on screen are not in it."""
        (history,) = self.dbus_call(
            "org.freedesktop.Notifications",
            "/org/freedesktop/Notifications",
            "org.dunstproject.cmd0.NotificationListHistory",
        )
        return [dict(item) for item in history if isinstance(item, dict)]

    def close_notifications(self) -> None:
        """Close every popup dunst shows (`dunstctl close-all`): a popup drawn over the panel
        hides the tray icon's pixels."""
        self.dbus_call(
            "org.freedesktop.Notifications",
            "/org/freedesktop/Notifications",
            "org.dunstproject.cmd0.NotificationCloseAll",
        )

    def dunst_displayed(self) -> int:
        """How many notifications dunst shows right now (`dunstctl count displayed`)."""
        (count,) = self.dbus_call(
            "org.freedesktop.Notifications",
            "/org/freedesktop/Notifications",
            "org.freedesktop.DBus.Properties.Get",
            "string:org.dunstproject.cmd0",
            "string:displayedLength",
        )
        return int(count)

    def dbus_call(
        self, dest: str, path: str, method: str, *args: str, timeout: float = 10.0
    ) -> list[Any]:
        """Call interface.Method on the session bus with dbus-send; args in dbus-send syntax
        ('string:x', 'int32:0', ...); returns the parsed reply arguments."""
        result = self.run(
            [
                "dbus-send",
                "--session",
                "--print-reply",
                f"--reply-timeout={int(timeout * 1000)}",
                f"--dest={dest}",
                path,
                method,
                *args,
            ],
            timeout=timeout + 5,
        )
        replies = parse_dbus_text(result.stdout)
        if not replies:
            raise DesktopError(f"cannot parse reply of {method}: {result.stdout!r}")
        return replies[0].args

    def tray_items(self) -> list[str]:
        """StatusNotifierItems registered with the xfce panel (e.g. ':1.11/StatusNotifierItem')."""
        (items,) = self.dbus_call(
            "org.kde.StatusNotifierWatcher",
            "/StatusNotifierWatcher",
            "org.freedesktop.DBus.Properties.Get",
            "string:org.kde.StatusNotifierWatcher",
            "string:RegisteredStatusNotifierItems",
        )
        return list(items)

    def tray_tooltip(self, item: str) -> str:
        """The tooltip a StatusNotifierItem exports: its title and text, one string."""
        service, _, path = item.partition("/")
        (tooltip,) = self.dbus_call(
            service,
            "/" + (path or "StatusNotifierItem"),
            "org.freedesktop.DBus.Properties.Get",
            "string:org.kde.StatusNotifierItem",
            "string:ToolTip",
        )
        _icon_name, _pixmaps, title, text = tooltip
        return "\n".join(part for part in (str(title), str(text)) if part)

    def _tray_menu(self, item: str) -> tuple[str, str, Any]:
        """The bus name, object path and layout of the menu a StatusNotifierItem exports."""
        service, _, path = item.partition("/")
        (menu_path,) = self.dbus_call(
            service,
            "/" + (path or "StatusNotifierItem"),
            "org.freedesktop.DBus.Properties.Get",
            "string:org.kde.StatusNotifierItem",
            "string:Menu",
        )
        _revision, layout = self.dbus_call(
            service,
            menu_path,
            "com.canonical.dbusmenu.GetLayout",
            "int32:0",
            "int32:-1",
            "array:string:label",
        )
        return service, str(menu_path), layout

    @staticmethod
    def _menu_items(layout: Any) -> list[tuple[int, str]]:
        items: list[tuple[int, str]] = []

        def walk(node: Any) -> None:
            ident, props, children = node
            if isinstance(props, dict) and props.get("label"):
                items.append((int(ident), str(props["label"])))
            for child in children:
                walk(child)

        walk(layout)
        return items

    def tray_menu_labels(self, item: str) -> list[str]:
        """Labels of the context menu a StatusNotifierItem exports (com.canonical.dbusmenu),
        depth-first: what the panel draws when the icon is right-clicked."""
        _service, _menu_path, layout = self._tray_menu(item)
        return [label for _ident, label in self._menu_items(layout)]

    def click_tray_menu(self, item: str, label_start: str) -> None:
        """What the panel sends when a menu item is clicked: dbusmenu's Event "clicked", to the
        first item whose label starts with `label_start`."""
        service, menu_path, layout = self._tray_menu(item)
        found = [i for i, label in self._menu_items(layout) if label.startswith(label_start)]
        assert found, f"no menu item {label_start!r}"
        self.dbus_call(
            service,
            menu_path,
            "com.canonical.dbusmenu.Event",
            f"int32:{found[0]}",
            "string:clicked",
            "variant:int32:0",
            "uint32:0",
        )

    # -- X windows and input ----------------------------------------------------------------------

    def find_windows(
        self,
        name: str | None = None,
        class_: str | None = None,
        pid: int | None = None,
        classname: str | None = None,
        visible: bool = True,
    ) -> list[int]:
        """X window ids matching ALL given criteria (name/class_/classname are regexes, as in
        `xdotool search`); with no criteria, every (visible) window."""
        base = ["xdotool", "search"] + (["--onlyvisible"] if visible else [])
        queries = [
            [*base, "--name", name] if name is not None else None,
            [*base, "--class", class_] if class_ is not None else None,
            [*base, "--classname", classname] if classname is not None else None,
            [*base, "--pid", str(pid)] if pid is not None else None,
        ]
        queries = [q for q in queries if q] or [[*base, "--name", ""]]
        found: list[int] | None = None
        for query in queries:
            out = self.run(query, check=False).stdout  # exit status 1 = nothing found
            ids = [int(w) for w in out.split()]
            found = ids if found is None else [w for w in found if w in ids]
        return found or []

    def window_geometry(self, wid: int) -> Rect:
        """Position and size of a window (screen coordinates)."""
        out = self.run(["xdotool", "getwindowgeometry", "--shell", str(wid)]).stdout
        v = dict(line.split("=", 1) for line in out.split() if "=" in line)
        return Rect(int(v["X"]), int(v["Y"]), int(v["WIDTH"]), int(v["HEIGHT"]))

    def window_property(self, wid: int, prop: str) -> str:
        """Raw `xprop` value text of one property ('' if unset)."""
        out = self.run(["xprop", "-id", str(wid), prop], check=False).stdout
        _, sep, value = out.partition("=")
        return value.strip() if sep else ""

    def window_types(self, wid: int) -> list[str]:
        """_NET_WM_WINDOW_TYPE atoms without the prefix, e.g. ['POPUP_MENU', 'NORMAL']."""
        value = self.window_property(wid, "_NET_WM_WINDOW_TYPE")
        return [
            a.strip().removeprefix("_NET_WM_WINDOW_TYPE_") for a in value.split(",") if a.strip()
        ]

    def window_class(self, wid: int) -> tuple[str, ...]:
        """WM_CLASS (instance, class), e.g. ('tiny_tray.py', 'tinytray')."""
        return tuple(re.findall(r'"([^"]*)"', self.window_property(wid, "WM_CLASS")))

    def popup_menus(self) -> list[int]:
        """Visible windows of type _NET_WM_WINDOW_TYPE_POPUP_MENU (open context menus)."""
        return [w for w in self.find_windows() if "POPUP_MENU" in self.window_types(w)]

    def click(self, x: int, y: int, button: int = 1) -> None:
        """Move the pointer to (x, y) and click (1 left, 2 middle, 3 right)."""
        # `mousemove --sync` waits for a motion event, which never comes when the pointer is
        # already there: then click without moving.
        if self.pointer() == (x, y):
            self.run(["xdotool", "click", str(button)])
        else:
            self.run(["xdotool", "mousemove", "--sync", str(x), str(y), "click", str(button)])

    def pointer(self) -> tuple[int, int]:
        """Where the pointer is now."""
        out = self.run(["xdotool", "getmouselocation", "--shell"]).stdout
        v = dict(line.split("=", 1) for line in out.split() if "=" in line)
        return int(v["X"]), int(v["Y"])

    def move_pointer(self, x: int, y: int) -> None:
        if self.pointer() != (x, y):  # --sync would wait for ever for a motion that won't come
            self.run(["xdotool", "mousemove", "--sync", str(x), str(y)])

    def key(self, *keys: str) -> None:
        """Send key presses to the focused window, e.g. key('Escape')."""
        self.run(["xdotool", "key", *keys])

    def wait_until(
        self,
        fn: Callable[[], T],
        timeout: float = 10.0,
        interval: float = 0.1,
        message: str = "condition",
        ignore: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Poll fn until truthy (see module-level wait_until)."""
        return wait_until(fn, timeout, interval, message, ignore)

    # -- internals -------------------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._session_vars:
            raise DesktopError("the desktop is not running; call start() first")

    def _tool_env(self) -> dict[str, str]:
        self._require_running()
        env = _clean_environ()
        env.update(self._session_vars)
        env["QT_QPA_PLATFORM"] = self.QT_PLATFORM
        return env

    def _script_env(self) -> dict[str, str]:
        env = _clean_environ()
        assert self.state_dir is not None
        env["STATE"] = str(self.state_dir)
        return env

    @staticmethod
    def _read_env_file(path: Path) -> dict[str, str]:
        # Let bash read what bash wrote (values are %q-quoted), starting from an empty environment.
        out = subprocess.run(
            ["env", "-i", "bash", "-c", 'set -a; . "$1"; env -0', "_", str(path)],
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout.decode()
        pairs = (item.split("=", 1) for item in out.split("\0") if "=" in item)
        return {k: v for k, v in pairs if k not in ("PWD", "SHLVL", "_", "OLDPWD")}

    def _keep_logs(self, state: Path) -> None:
        logs = sorted(state.glob("*.log"))
        if not logs:
            return
        dest = self.artifacts_dir / f"logs-{self.tray_host}"
        with contextlib.suppress(OSError):
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True, exist_ok=True)
            for log in logs:
                shutil.copy2(log, dest / log.name)


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _SCRUBBED_VARS}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    return True


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in path.read_text().split() if p.isdigit()]
    except OSError:
        return []


def _pids_with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment has name=value (reads /proc/*/environ)."""
    needle = f"{name}={value}".encode()
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and _alive(int(entry)):
            pids.append(int(entry))
    return pids


def _terminate(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


__all__ = [
    "DEBIAN_PACKAGES",
    "REQUIRED_PROGRAMS",
    "DBusMessage",
    "Desktop",
    "DesktopError",
    "DesktopTimeout",
    "Image",
    "Rect",
    "missing_programs",
    "notification_from_message",
    "parse_colour",
    "parse_dbus_text",
    "wait_until",
]
