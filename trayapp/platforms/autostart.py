"""Start at login: one small interface, a real implementation per OS, and a do-nothing fallback.

- Linux (and any freedesktop session): a `.desktop` file in `$XDG_CONFIG_HOME/autostart/`.
- macOS: a LaunchAgent plist in `~/Library/LaunchAgents/` with `RunAtLoad`.
- Windows: a value under `HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run`.

Files are written to a temp file and renamed over the old one, so a crash leaves the old entry
or the new one, never half of one. Every failure reaches the caller as `AutostartError` with a
one-line message the UI can show as it is.
"""

from __future__ import annotations

import configparser
import os
import plistlib
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from trayapp.core.host import OSName
from trayapp.fileio import atomic_write
from trayapp.platforms import current_os

APP_TITLE = "Port Watch"
DESKTOP_FILE_NAME = "portwatch.desktop"
LAUNCH_AGENT_LABEL = "org.portwatch.PortWatch"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
# Task Manager and Settings > Startup apps switch a Run entry off here without touching the Run
# key itself (https://superuser.com/questions/1766797), so both must be read to tell the truth.
STARTUP_APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
RUN_VALUE_NAME = "PortWatch"
TRAY_SCRIPT = "portwatch-tray"


class AutostartError(Exception):
    """Start at login could not be read or changed; the message is one line, fit for the UI."""


def _one_line(error: OSError) -> str:
    text = error.strerror or str(error) or type(error).__name__
    return " ".join(text.split())


class Autostart(ABC):
    """Whether Port Watch starts when the user logs in."""

    @abstractmethod
    def is_enabled(self) -> bool:
        """True when an entry exists and the desktop will act on it; never raises."""

    @abstractmethod
    def enable(self, command: list[str]) -> None:
        """Start `command` (program and arguments, unquoted) at every login."""

    @abstractmethod
    def disable(self) -> None:
        """Remove the entry; fine when there is none."""

    @abstractmethod
    def describe(self) -> str:
        """Where the entry lives, for the settings dialog."""


def _check_command(command: list[str]) -> None:
    if not command or not command[0]:
        raise ValueError("start at login needs a program to start")


def _write_atomic(path: Path, data: bytes) -> None:
    # 0644: launchd refuses agents that are group/world writable, and it is the usual mode for
    # both files.
    try:
        atomic_write(path, data, 0o644)
    except OSError as error:
        raise AutostartError(
            f"could not turn on start at login: {_one_line(error)} ({path})"
        ) from error


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise AutostartError(
            f"could not turn off start at login: {_one_line(error)} ({path})"
        ) from error


# --- Linux and other freedesktop sessions -----------------------------------------------------

# Desktop Entry spec, "The Exec key": an argument holding any of these must be quoted.
_EXEC_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")
# Inside double quotes these four are escaped with a backslash.
_EXEC_QUOTE_ESCAPED = frozenset('"`$\\')


# String values may not hold control characters, and only tab, newline and CR have escapes.
_NO_ESCAPE_FOR = frozenset(chr(code) for code in [*range(0x20), 0x7F]) - set("\t\n\r")


def quote_exec_arg(arg: str) -> str:
    """One argument quoted for an Exec key, before the general string escapes are applied."""
    if arg and not any(char in _EXEC_RESERVED for char in arg):
        quoted = arg
    else:
        inner = "".join("\\" + char if char in _EXEC_QUOTE_ESCAPED else char for char in arg)
        quoted = f'"{inner}"'
    # A lone % starts a field code (%f, %u, ...); %% is the literal percent sign.
    return quoted.replace("%", "%%")


def _escape_string_value(value: str) -> str:
    # The spec's escapes for string values; they apply on top of the Exec quoting, which is why
    # a literal backslash in a quoted argument ends up as four backslashes in the file.
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    )


def exec_value(command: list[str]) -> str:
    """The Exec= value (as written in the file) that starts exactly `command`."""
    _check_command(command)
    if any(char in _NO_ESCAPE_FOR for arg in command for char in arg):
        raise AutostartError("start at login cannot use a command with control characters")
    return _escape_string_value(" ".join(quote_exec_arg(arg) for arg in command))


def desktop_entry(command: list[str]) -> str:
    _check_command(command)
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.5",
        f"Name={APP_TITLE}",
        "Comment=Tells what is on a port, and when that changes",
        f"Exec={exec_value(command)}",
    ]
    if os.path.isabs(command[0]):
        # If the install this points at is deleted, the session then skips the entry quietly
        # instead of showing a "failed to start" error at every login.
        lines.append(f"TryExec={_escape_string_value(command[0])}")
    lines += [
        "Icon=portwatch",
        "Terminal=false",
        "X-GNOME-Autostart-enabled=true",
        # Started too early the tray host may not be up yet; a short delay avoids the race.
        "X-GNOME-Autostart-Delay=5",
    ]
    return "\n".join(lines) + "\n"


def _xdg_config_home(environ: Mapping[str, str]) -> Path:
    value = environ.get("XDG_CONFIG_HOME", "")
    # The base directory spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / ".config"


class _DesktopFileParser(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr  # desktop entry keys are case-sensitive


class XdgAutostart(Autostart):
    def __init__(self, config_home: Path | None = None) -> None:
        home = config_home if config_home is not None else _xdg_config_home(os.environ)
        self.path = home / "autostart" / DESKTOP_FILE_NAME

    def is_enabled(self) -> bool:
        parser = _DesktopFileParser(interpolation=None, strict=False)
        try:
            with self.path.open(encoding="utf-8") as handle:
                parser.read_file(handle)
            entry = parser["Desktop Entry"]
        except (OSError, UnicodeDecodeError, configparser.Error, KeyError):
            # A file the session cannot read or parse starts nothing either.
            return False
        # GNOME's "Startup Applications" switch writes X-GNOME-Autostart-enabled=false into
        # this same file; Hidden=true is the spec's own way to switch an entry off.
        if entry.get("Hidden", "false").strip().lower() == "true":
            return False
        return entry.get("X-GNOME-Autostart-enabled", "true").strip().lower() != "false"

    def enable(self, command: list[str]) -> None:
        try:
            # Exec is an ASCII "string" in the spec, but sessions read the whole file as UTF-8,
            # and a home folder named in any language has to work.
            data = desktop_entry(command).encode("utf-8")
        except UnicodeEncodeError as error:
            raise AutostartError(
                "start at login cannot use this program path: it is not valid UTF-8"
            ) from error
        _write_atomic(self.path, data)

    def disable(self) -> None:
        _remove(self.path)

    def describe(self) -> str:
        return f"login entry {self.path}"


# --- macOS -------------------------------------------------------------------------------------


class LaunchAgentAutostart(Autostart):
    def __init__(self, home: Path | None = None) -> None:
        base = home if home is not None else Path.home()
        self.path = base / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"

    def is_enabled(self) -> bool:
        try:
            with self.path.open("rb") as handle:
                agent = plistlib.load(handle)
        except Exception:
            # plistlib lets expat, ValueError and more escape on a damaged file; whatever it
            # is, launchd cannot load such an agent either.
            return False
        # launchd skips an agent whose plist says Disabled=true.
        return isinstance(agent, dict) and agent.get("Disabled") is not True

    def enable(self, command: list[str]) -> None:
        _check_command(command)
        agent = {
            "Label": LAUNCH_AGENT_LABEL,
            "ProgramArguments": list(command),
            "RunAtLoad": True,
            # Interactive: a UI app, so launchd does not throttle it like a background daemon.
            "ProcessType": "Interactive",
            # Only in a graphical login, not over ssh, where a tray app has nowhere to go.
            "LimitLoadToSessionType": "Aqua",
        }
        _write_atomic(self.path, plistlib.dumps(agent, fmt=plistlib.FMT_XML))

    def disable(self) -> None:
        _remove(self.path)

    def describe(self) -> str:
        return f"launch agent {self.path}"


# --- Windows -----------------------------------------------------------------------------------


class Registry(Protocol):
    """The three registry operations autostart needs, all in the current user's registry
    (HKEY_CURRENT_USER: no administrator rights needed); winreg behind it, a fake in tests."""

    def read(self, key_path: str, name: str) -> object | None:
        """The value's data, or None when the key or value does not exist."""

    def write(self, key_path: str, name: str, data: str) -> None:
        """Create the key if needed and set the value, a string (REG_SZ)."""

    def delete(self, key_path: str, name: str) -> None:
        """Remove the value; fine when it or the key does not exist."""


class WinregRegistry:
    """`Registry` over the standard `winreg` module, imported only when used (Windows only)."""

    def read(self, key_path: str, name: str) -> object | None:
        if sys.platform == "win32":
            import winreg

            try:
                with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key_path) as key:
                    data: object = winreg.QueryValueEx(key, name)[0]
            except FileNotFoundError:
                return None
            return data
        raise OSError("the Windows registry exists only on Windows")

    def write(self, key_path: str, name: str, data: str) -> None:
        if sys.platform == "win32":
            import winreg

            access = winreg.KEY_SET_VALUE
            with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, key_path, 0, access) as key:
                winreg.SetValueEx(key, name, 0, winreg.REG_SZ, data)
            return
        raise OSError("the Windows registry exists only on Windows")

    def delete(self, key_path: str, name: str) -> None:
        if sys.platform == "win32":
            import winreg

            access = winreg.KEY_SET_VALUE
            try:
                with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key_path, 0, access) as key:
                    winreg.DeleteValue(key, name)
            except FileNotFoundError:
                pass
            return
        raise OSError("the Windows registry exists only on Windows")


def _switched_off_in_task_manager(data: object) -> bool:
    # StartupApproved data is 12 bytes: 02 00.. when enabled, an odd first byte (03 ...) plus the
    # time it was switched off when disabled.
    return isinstance(data, bytes) and len(data) > 0 and data[0] % 2 == 1


class WindowsRunAutostart(Autostart):
    def __init__(self, registry: Registry | None = None) -> None:
        self.registry: Registry = registry if registry is not None else WinregRegistry()

    def is_enabled(self) -> bool:
        try:
            command = self.registry.read(RUN_KEY, RUN_VALUE_NAME)
            approved = self.registry.read(STARTUP_APPROVED_KEY, RUN_VALUE_NAME)
        except OSError:
            return False
        return (
            isinstance(command, str)
            and bool(command)
            and not _switched_off_in_task_manager(approved)
        )

    def enable(self, command: list[str]) -> None:
        _check_command(command)
        try:
            self.registry.write(RUN_KEY, RUN_VALUE_NAME, subprocess.list2cmdline(command))
            # Turning it on here must win over an earlier "Disabled" in Task Manager, which
            # would otherwise keep the new entry from running.
            self.registry.delete(STARTUP_APPROVED_KEY, RUN_VALUE_NAME)
        except OSError as error:
            raise AutostartError(
                f"could not turn on start at login: {_one_line(error)} (registry {RUN_KEY})"
            ) from error

    def disable(self) -> None:
        try:
            self.registry.delete(RUN_KEY, RUN_VALUE_NAME)
            self.registry.delete(STARTUP_APPROVED_KEY, RUN_VALUE_NAME)
        except OSError as error:
            raise AutostartError(
                f"could not turn off start at login: {_one_line(error)} (registry {RUN_KEY})"
            ) from error

    def describe(self) -> str:
        return f"registry value {RUN_VALUE_NAME} in HKEY_CURRENT_USER\\{RUN_KEY}"


# --- Anywhere else -----------------------------------------------------------------------------


class NullAutostart(Autostart):
    def is_enabled(self) -> bool:
        return False

    def enable(self, command: list[str]) -> None:
        raise AutostartError("start at login is not supported on this system")

    def disable(self) -> None:
        pass

    def describe(self) -> str:
        return "start at login is not supported on this system"


def autostart_for(os_name: OSName | None = None) -> Autostart:
    name = os_name or current_os()
    if name == "linux":
        return XdgAutostart()
    if name == "macos":
        return LaunchAgentAutostart()
    if name == "windows":
        return WindowsRunAutostart()
    return NullAutostart()


def default_command(
    *,
    os_name: OSName | None = None,
    executable: str | None = None,
    frozen: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """How to start the tray app again at login, from how this process was started.

    The keyword arguments exist for tests; by default they describe the running process.
    """
    name = os_name or current_os()
    exe = executable if executable is not None else sys.executable
    env = environ if environ is not None else os.environ
    if frozen if frozen is not None else bool(getattr(sys, "frozen", False)):
        # Inside an AppImage sys.executable lives in a mount that is gone after logout; the
        # AppImage runtime exports the path of the image itself.
        appimage = env.get("APPIMAGE")
        if name == "linux" and appimage:
            return [appimage]
        return [exe]
    # Not resolved: a venv's python is a symlink, and resolving it would leave the venv.
    bindir = Path(exe).parent
    if name == "windows":
        # A venv keeps scripts beside python.exe; a system install keeps them in Scripts\.
        for script in (bindir / f"{TRAY_SCRIPT}.exe", bindir / "Scripts" / f"{TRAY_SCRIPT}.exe"):
            if script.is_file():
                return [str(script)]
        # pythonw has no console, so no black window flashes up at every login.
        pythonw = bindir / "pythonw.exe"
        return [str(pythonw) if pythonw.is_file() else exe, "-m", "trayapp", "tray"]
    script = bindir / TRAY_SCRIPT
    if script.is_file():
        return [str(script)]
    return [exe, "-m", "trayapp", "tray"]
