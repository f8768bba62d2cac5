"""Start at login: the Linux entry is written and read back for real, macOS's plist is parsed
back with plistlib, and the Windows registry writes are checked through a recording fake."""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import require_tools
from trayapp.core.host import OSName
from trayapp.platforms.autostart import (
    RUN_KEY,
    STARTUP_APPROVED_KEY,
    Autostart,
    AutostartError,
    LaunchAgentAutostart,
    NullAutostart,
    WindowsRunAutostart,
    XdgAutostart,
    autostart_for,
    default_command,
    exec_value,
)

TRAY = ["/opt/port watch/bin/portwatch-tray", "tray"]


class DesktopFile(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr


def read_entry(path: Path) -> configparser.SectionProxy:
    parser = DesktopFile(interpolation=None)
    parser.read_string(path.read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return parser["Desktop Entry"]


def parse_exec(value: str) -> list[str]:
    """Undo an Exec value as the Desktop Entry spec says: string escapes, then quoting, then %%.

    Written from the spec, independently of the code under test.
    """
    escapes = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    unescaped: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\":
            unescaped.append(escapes[value[i + 1]])
            i += 2
        else:
            unescaped.append(value[i])
            i += 1
    text = "".join(unescaped)

    args: list[str] = []
    current: str | None = None
    quoted = False
    i = 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == "\\":
                assert text[i + 1] in '"`$\\', f"stray backslash in quotes: {text!r}"
                current = (current or "") + text[i + 1]
                i += 1
            elif char == '"':
                quoted = False
            else:
                current = (current or "") + char
        elif char == " ":
            if current is not None:
                args.append(current)
            current = None
        elif char == '"':
            quoted = True
            current = current or ""
        else:
            assert char not in " \t\n\"'\\><~|&;$*?#()`", f"reserved {char!r} unquoted"
            current = (current or "") + char
        i += 1
    assert not quoted, "unterminated quote"
    if current is not None:
        args.append(current)

    def field_codes(arg: str) -> str:
        out = []
        j = 0
        while j < len(arg):
            if arg[j] == "%":
                assert arg[j + 1] == "%", f"unexpected field code in {arg!r}"
                out.append("%")
                j += 2
            else:
                out.append(arg[j])
                j += 1
        return "".join(out)

    return [field_codes(arg) for arg in args]


# --- Linux: real files ---------------------------------------------------------------------------


def test_xdg_entry_has_the_autostart_keys(tmp_path: Path) -> None:
    autostart = XdgAutostart(config_home=tmp_path)
    autostart.enable(TRAY)

    path = tmp_path / "autostart" / "portwatch.desktop"
    entry = read_entry(path)
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Port Watch"
    assert entry["Comment"]
    assert entry["Icon"] == "portwatch"
    assert entry["Terminal"] == "false"
    assert entry["X-GNOME-Autostart-enabled"] == "true"
    assert entry["X-GNOME-Autostart-Delay"] == "5"
    assert entry["TryExec"] == TRAY[0]
    assert parse_exec(entry["Exec"]) == TRAY
    assert str(path) in autostart.describe()
    if os.name == "posix":  # Windows keeps no such mode bits
        assert path.stat().st_mode & 0o777 == 0o644


def test_exec_round_trips_spaces_and_percent(tmp_path: Path) -> None:
    command = ["/home/me/My Apps/100% tray/portwatch-tray", "--label", "50%", "a b"]
    XdgAutostart(config_home=tmp_path).enable(command)

    raw = read_entry(tmp_path / "autostart" / "portwatch.desktop")["Exec"]
    assert raw == '"/home/me/My Apps/100%% tray/portwatch-tray" --label 50%% "a b"'
    assert parse_exec(raw) == command


def test_exec_quotes_every_reserved_character() -> None:
    command = ["/bin/x", "$HOME", "back\\slash", 'dq"', "`tick`", "semi;", "~", "*?", "#", "()"]
    command += ["it's", "<>|&", "tab\there", "new\nline", ""]
    value = exec_value(command)
    assert "\n" not in value and "\t" not in value
    assert '"back\\\\\\\\slash"' in value  # four backslashes in the file for one literal
    assert '"\\\\$HOME"' in value
    assert parse_exec(value) == command


printable = st.characters(blacklist_categories=("Cs", "Cc"), min_codepoint=1)
arguments = st.text(alphabet=st.one_of(printable, st.sampled_from("\t\n\r")), max_size=12)


@given(st.lists(arguments, min_size=1, max_size=5).filter(lambda args: args[0] != ""))
def test_exec_round_trips_any_arguments(command: list[str]) -> None:
    assert parse_exec(exec_value(command)) == command


def test_control_characters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AutostartError, match="control characters"):
        XdgAutostart(config_home=tmp_path).enable(["/bin/tray", "bell\x07"])
    assert not (tmp_path / "autostart" / "portwatch.desktop").exists()


@pytest.mark.linux("GLib's launcher runs Linux entries")
def test_glib_starts_the_exact_command(tmp_path: Path) -> None:
    """GLib, which GNOME and most sessions use to run autostart entries, gets the same argv."""
    require_tools("gio")
    folder = tmp_path / "my apps" / "100% sure $x"
    folder.mkdir(parents=True)
    out = tmp_path / "argv.json"
    recorder = folder / "record.py"
    recorder.write_text(
        f"import json, sys\nopen({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))\n",
        encoding="utf-8",
    )
    args = ["a b", "50%", "$HOME", "back\\slash", 'dq"', "`t`", "it's", "tab\tx", "", "~"]
    XdgAutostart(config_home=tmp_path).enable([sys.executable, str(recorder), *args])

    subprocess.run(
        ["gio", "launch", str(tmp_path / "autostart" / "portwatch.desktop")],
        check=True,
        capture_output=True,
        timeout=30,
    )
    deadline = time.monotonic() + 20
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(out.read_text(encoding="utf-8")) == args


def test_enable_is_enabled_disable(tmp_path: Path) -> None:
    autostart = XdgAutostart(config_home=tmp_path)
    path = tmp_path / "autostart" / "portwatch.desktop"
    assert not autostart.is_enabled()

    autostart.enable(TRAY)
    autostart.enable([*TRAY, "--debug"])  # a second enable replaces the entry
    assert autostart.is_enabled()
    assert parse_exec(read_entry(path)["Exec"]) == [*TRAY, "--debug"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["portwatch.desktop"]  # no temp left

    autostart.disable()
    assert not path.exists()
    assert not autostart.is_enabled()
    autostart.disable()  # nothing to remove is fine


@pytest.mark.parametrize(
    "edit",
    [
        ("X-GNOME-Autostart-enabled=true", "X-GNOME-Autostart-enabled=false"),
        ("Terminal=false", "Terminal=false\nHidden=true"),
    ],
)
def test_entry_switched_off_by_the_desktop_is_not_enabled(
    tmp_path: Path, edit: tuple[str, str]
) -> None:
    autostart = XdgAutostart(config_home=tmp_path)
    autostart.enable(TRAY)
    path = tmp_path / "autostart" / "portwatch.desktop"
    path.write_text(path.read_text(encoding="utf-8").replace(*edit), encoding="utf-8")
    assert not autostart.is_enabled()


def test_unreadable_entry_is_not_enabled(tmp_path: Path) -> None:
    path = tmp_path / "autostart" / "portwatch.desktop"
    path.parent.mkdir()
    path.write_bytes(b"\xff\xfe not a desktop file")
    assert not XdgAutostart(config_home=tmp_path).is_enabled()


def test_unwritable_config_home_raises_autostart_error(tmp_path: Path) -> None:
    # A file where the directory should be defeats even root, unlike chmod.
    blocker = tmp_path / "config"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(AutostartError) as caught:
        XdgAutostart(config_home=blocker).enable(TRAY)
    message = str(caught.value)
    assert message.startswith("could not turn on start at login")
    assert "\n" not in message
    assert not isinstance(caught.value, OSError)


def test_entry_that_cannot_be_replaced_or_removed_raises_autostart_error(tmp_path: Path) -> None:
    (tmp_path / "autostart" / "portwatch.desktop").mkdir(parents=True)
    autostart = XdgAutostart(config_home=tmp_path)
    with pytest.raises(AutostartError, match="could not turn on"):
        autostart.enable(TRAY)
    with pytest.raises(AutostartError, match="could not turn off"):
        autostart.disable()
    assert [p.name for p in (tmp_path / "autostart").iterdir()] == ["portwatch.desktop"]


def test_xdg_config_home_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert XdgAutostart().path == tmp_path / "xdg" / "autostart" / "portwatch.desktop"
    # The base directory spec says a relative value is invalid and must be ignored.
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert XdgAutostart().path == tmp_path / "home" / ".config" / "autostart" / "portwatch.desktop"


# --- macOS: the plist, parsed back -------------------------------------------------------------


def test_launch_agent_plist(tmp_path: Path) -> None:
    autostart = LaunchAgentAutostart(home=tmp_path)
    assert not autostart.is_enabled()
    autostart.enable(TRAY)

    path = tmp_path / "Library" / "LaunchAgents" / "org.portwatch.PortWatch.plist"
    with path.open("rb") as handle:
        agent = plistlib.load(handle)
    assert agent == {
        "Label": "org.portwatch.PortWatch",
        "ProgramArguments": TRAY,
        "RunAtLoad": True,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
    }
    if os.name == "posix":  # Windows keeps no such mode bits
        assert path.stat().st_mode & 0o777 == 0o644
    assert autostart.is_enabled()
    assert str(path) in autostart.describe()

    autostart.disable()
    assert not path.exists()
    assert not autostart.is_enabled()
    autostart.disable()


def test_launch_agent_disabled_key_or_garbage_is_not_enabled(tmp_path: Path) -> None:
    autostart = LaunchAgentAutostart(home=tmp_path)
    autostart.enable(TRAY)
    agent = plistlib.loads(autostart.path.read_bytes())
    autostart.path.write_bytes(plistlib.dumps({**agent, "Disabled": True}))
    assert not autostart.is_enabled()
    autostart.path.write_bytes(b"<plist>broken")
    assert not autostart.is_enabled()


def test_launch_agent_unwritable_raises_autostart_error(tmp_path: Path) -> None:
    (tmp_path / "Library").write_text("", encoding="utf-8")
    with pytest.raises(AutostartError, match="could not turn on start at login"):
        LaunchAgentAutostart(home=tmp_path).enable(TRAY)


# --- Windows: what would be written to the registry ----------------------------------------------


class FakeRegistry:
    """The current user's registry as a dict: (key path, value name) -> data."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], object] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.deletes: list[tuple[str, str]] = []
        self.fail: OSError | None = None

    def read(self, key_path: str, name: str) -> object | None:
        if self.fail:
            raise self.fail
        return self.values.get((key_path, name))

    def write(self, key_path: str, name: str, data: str) -> None:
        if self.fail:
            raise self.fail
        self.writes.append((key_path, name, data))
        self.values[(key_path, name)] = data

    def delete(self, key_path: str, name: str) -> None:
        if self.fail:
            raise self.fail
        self.deletes.append((key_path, name))
        self.values.pop((key_path, name), None)


def test_windows_run_value() -> None:
    registry = FakeRegistry()
    autostart = WindowsRunAutostart(registry=registry)
    assert not autostart.is_enabled()

    autostart.enable([r"C:\Program Files\Port Watch\portwatch-tray.exe", "tray", 'say "hi"'])

    assert RUN_KEY == r"Software\Microsoft\Windows\CurrentVersion\Run"
    assert registry.writes == [
        (
            r"Software\Microsoft\Windows\CurrentVersion\Run",
            "PortWatch",
            r'"C:\Program Files\Port Watch\portwatch-tray.exe" tray "say \"hi\""',
        )
    ]
    assert autostart.is_enabled()
    assert r"HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run" in (
        autostart.describe()
    )

    autostart.disable()
    assert (RUN_KEY, "PortWatch") in registry.deletes
    assert not autostart.is_enabled()


def test_windows_respects_and_clears_task_manager_switch() -> None:
    registry = FakeRegistry()
    autostart = WindowsRunAutostart(registry=registry)
    autostart.enable([r"C:\pw\portwatch-tray.exe"])
    approved = (STARTUP_APPROVED_KEY, "PortWatch")

    registry.values[approved] = bytes([3, 0, 0, 0]) + bytes(8)  # switched off in Task Manager
    assert not autostart.is_enabled()
    registry.values[approved] = bytes([2]) + bytes(11)
    assert autostart.is_enabled()

    registry.values[approved] = bytes([3]) + bytes(11)
    autostart.enable([r"C:\pw\portwatch-tray.exe"])  # turning it on here must win
    assert approved not in registry.values
    assert autostart.is_enabled()


def test_windows_registry_errors_become_autostart_errors() -> None:
    registry = FakeRegistry()
    registry.fail = PermissionError(13, "Access is denied")
    autostart = WindowsRunAutostart(registry=registry)
    assert not autostart.is_enabled()
    with pytest.raises(AutostartError, match="Access is denied"):
        autostart.enable([r"C:\pw\portwatch-tray.exe"])
    with pytest.raises(AutostartError, match="could not turn off"):
        autostart.disable()


@pytest.mark.posix("off Windows: on Windows this would write the real registry")
def test_real_registry_off_windows_is_an_autostart_error() -> None:
    autostart = WindowsRunAutostart()
    assert not autostart.is_enabled()
    with pytest.raises(AutostartError):
        autostart.enable(["portwatch-tray.exe"])


# --- Elsewhere, the factory, and the command -------------------------------------------------


def test_null_autostart() -> None:
    autostart = NullAutostart()
    assert not autostart.is_enabled()
    with pytest.raises(AutostartError) as caught:
        autostart.enable(TRAY)
    assert str(caught.value) == "start at login is not supported on this system"
    autostart.disable()
    assert "not supported" in autostart.describe()


@pytest.mark.parametrize(
    ("os_name", "kind"),
    [
        ("linux", XdgAutostart),
        ("macos", LaunchAgentAutostart),
        ("windows", WindowsRunAutostart),
        ("other", NullAutostart),
    ],
)
def test_factory(os_name: OSName, kind: type[Autostart]) -> None:
    assert type(autostart_for(os_name)) is kind


def test_factory_picks_this_os() -> None:
    assert isinstance(autostart_for(), XdgAutostart if sys.platform == "linux" else Autostart)


def test_empty_command_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        XdgAutostart(config_home=tmp_path).enable([])


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
    return path


def test_default_command_frozen(tmp_path: Path) -> None:
    exe = str(tmp_path / "PortWatch")
    assert default_command(os_name="macos", executable=exe, frozen=True, environ={}) == [exe]
    image = "/home/me/PortWatch.AppImage"
    env = {"APPIMAGE": image}
    assert default_command(os_name="linux", executable=exe, frozen=True, environ=env) == [image]


def test_default_command_prefers_the_script(tmp_path: Path) -> None:
    python = str(tmp_path / "bin" / "python")
    assert default_command(os_name="linux", executable=python, frozen=False) == [
        python,
        "-m",
        "trayapp",
        "tray",
    ]
    script = touch(tmp_path / "bin" / "portwatch-tray")
    assert default_command(os_name="linux", executable=python, frozen=False) == [str(script)]


def test_default_command_windows(tmp_path: Path) -> None:
    python = str(tmp_path / "python.exe")
    assert default_command(os_name="windows", executable=python, frozen=False) == [
        python,
        "-m",
        "trayapp",
        "tray",
    ]
    pythonw = touch(tmp_path / "pythonw.exe")
    assert default_command(os_name="windows", executable=python, frozen=False) == [
        str(pythonw),
        "-m",
        "trayapp",
        "tray",
    ]
    script = touch(tmp_path / "Scripts" / "portwatch-tray.exe")
    assert default_command(os_name="windows", executable=python, frozen=False) == [str(script)]


def test_default_command_here_starts_this_install() -> None:
    command = default_command()
    assert command[0].startswith(os.path.dirname(sys.executable))
