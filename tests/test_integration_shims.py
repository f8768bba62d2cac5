"""Desktop integration shims: no-ops here, and the exact native calls they would make on macOS
and Windows, checked through a fake ctypes library loader."""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import pytest

from trayapp.platforms import current_os
from trayapp.platforms.integration import (
    hide_dock_icon,
    is_frozen,
    no_tray_help,
    set_app_user_model_id,
)

Call = tuple[str, tuple[Any, ...], Any, Any]  # (function, args, restype, argtypes)


class FakeFunction:
    def __init__(self, library: FakeLibrary, name: str) -> None:
        self.library = library
        self.name = name
        self.restype: Any = ctypes.c_int
        self.argtypes: Any = None

    def __call__(self, *args: Any) -> Any:
        self.library.calls.append((self.name, args, self.restype, self.argtypes))
        return self.library.results[self.name](*args)


class FakeLibrary:
    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.calls: list[Call] = []

    def __getitem__(self, name: str) -> FakeFunction:
        return FakeFunction(self, name)

    def __getattr__(self, name: str) -> FakeFunction:
        raise AssertionError(f"looked up {name} as an attribute: its types would be shared")


class FakeLoader:
    def __init__(self, libraries: dict[str, FakeLibrary]) -> None:
        self.libraries = libraries
        self.loaded: list[str] = []

    def LoadLibrary(self, name: str) -> FakeLibrary:
        self.loaded.append(name)
        if name not in self.libraries:
            raise OSError(f"{name}: cannot open shared object file")
        return self.libraries[name]


NS_APPLICATION = 0x1000
SHARED_APPLICATION_SEL = 0x2000
SET_POLICY_SEL = 0x3000
APP = 0x4000


def objc_runtime(policy_result: bool = True, ns_application: int = NS_APPLICATION) -> FakeLibrary:
    selectors = {
        b"sharedApplication": SHARED_APPLICATION_SEL,
        b"setActivationPolicy:": SET_POLICY_SEL,
    }

    def msg_send(receiver: int, selector: int, *args: Any) -> Any:
        if (receiver, selector, args) == (NS_APPLICATION, SHARED_APPLICATION_SEL, ()):
            return APP
        if (receiver, selector, args) == (APP, SET_POLICY_SEL, (1,)):
            return policy_result
        raise AssertionError(f"unexpected message {receiver:#x} {selector:#x} {args}")

    return FakeLibrary(
        {
            "objc_getClass": lambda name: ns_application if name == b"NSApplication" else 0,
            "sel_registerName": lambda name: selectors[name],
            "objc_msgSend": msg_send,
        }
    )


def mac_loader(objc: FakeLibrary) -> FakeLoader:
    return FakeLoader(
        {
            "/System/Library/Frameworks/AppKit.framework/AppKit": FakeLibrary({}),
            "/usr/lib/libobjc.A.dylib": objc,
        }
    )


# --- Here (Linux): no-ops that never raise -----------------------------------------------------


@pytest.mark.linux("checks the no-op path on Linux")
def test_no_ops_on_linux() -> None:
    assert set_app_user_model_id() is False
    assert hide_dock_icon() is False
    assert is_frozen() is False


def test_is_frozen_follows_sys_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert is_frozen() is True


def test_other_os_never_touches_the_loader() -> None:
    loader = FakeLoader({})
    assert set_app_user_model_id(loader=loader, os_name="macos") is False
    assert hide_dock_icon(loader=loader, os_name="windows") is False
    assert hide_dock_icon(loader=loader, os_name="linux") is False
    assert loader.loaded == []


# --- macOS ----------------------------------------------------------------------------------------


def test_hide_dock_icon_sends_the_exact_messages() -> None:
    objc = objc_runtime()
    loader = mac_loader(objc)

    assert hide_dock_icon(loader=loader, os_name="macos", bundled=False) is True

    assert loader.loaded == [
        "/System/Library/Frameworks/AppKit.framework/AppKit",
        "/usr/lib/libobjc.A.dylib",
    ]
    c_void_p, c_char_p = ctypes.c_void_p, ctypes.c_char_p
    assert objc.calls == [
        ("objc_getClass", (b"NSApplication",), c_void_p, [c_char_p]),
        ("sel_registerName", (b"sharedApplication",), c_void_p, [c_char_p]),
        ("objc_msgSend", (NS_APPLICATION, SHARED_APPLICATION_SEL), c_void_p, [c_void_p, c_void_p]),
        ("sel_registerName", (b"setActivationPolicy:",), c_void_p, [c_char_p]),
        (
            "objc_msgSend",
            (APP, SET_POLICY_SEL, 1),  # NSApplicationActivationPolicyAccessory
            ctypes.c_bool,
            [c_void_p, c_void_p, ctypes.c_long],
        ),
    ]


def test_hide_dock_icon_does_nothing_in_a_bundle() -> None:
    loader = mac_loader(objc_runtime())
    assert hide_dock_icon(loader=loader, os_name="macos", bundled=True) is False
    assert loader.loaded == []


def test_hide_dock_icon_reports_a_refusal() -> None:
    loader = mac_loader(objc_runtime(policy_result=False))
    assert hide_dock_icon(loader=loader, os_name="macos", bundled=False) is False


def test_hide_dock_icon_without_appkit_class() -> None:
    objc = objc_runtime(ns_application=0)
    assert hide_dock_icon(loader=mac_loader(objc), os_name="macos", bundled=False) is False
    assert [call[0] for call in objc.calls] == ["objc_getClass"]


def fail(*args: Any) -> Any:
    raise OSError("boom")


@pytest.mark.parametrize("broken", ["no library", "raises"])
def test_hide_dock_icon_never_raises(broken: str) -> None:
    if broken == "no library":
        loader = FakeLoader({})
    else:
        objc = objc_runtime()
        objc.results["objc_msgSend"] = fail
        loader = mac_loader(objc)
    assert hide_dock_icon(loader=loader, os_name="macos", bundled=False) is False


def test_hide_dock_icon_with_real_ctypes_off_macos_is_false() -> None:
    # The real loader fails to open libobjc here; that must come back as False.
    if current_os() != "macos":
        assert hide_dock_icon(os_name="macos", bundled=False) is False


# --- Windows --------------------------------------------------------------------------------------


def test_app_user_model_id_call() -> None:
    shell32 = FakeLibrary({"SetCurrentProcessExplicitAppUserModelID": lambda app_id: 0})
    loader = FakeLoader({"shell32": shell32})

    assert set_app_user_model_id(loader=loader, os_name="windows") is True

    assert loader.loaded == ["shell32"]
    assert shell32.calls == [
        (
            "SetCurrentProcessExplicitAppUserModelID",
            ("PortWatch.PortWatch",),
            ctypes.c_long,
            [ctypes.c_wchar_p],
        )
    ]


def test_app_user_model_id_custom_and_failure() -> None:
    e_invalidarg = -2147024809  # HRESULT 0x80070057
    shell32 = FakeLibrary({"SetCurrentProcessExplicitAppUserModelID": lambda app_id: e_invalidarg})
    loader = FakeLoader({"shell32": shell32})
    assert set_app_user_model_id("Acme.Tool", loader=loader, os_name="windows") is False
    assert shell32.calls[0][1] == ("Acme.Tool",)


def test_app_user_model_id_never_raises() -> None:
    assert set_app_user_model_id(loader=FakeLoader({}), os_name="windows") is False
    if current_os() != "windows":
        # No ctypes.windll here: the default loader fails, quietly.
        assert set_app_user_model_id(os_name="windows") is False


# --- no tray ------------------------------------------------------------------------------------


def test_no_tray_help_names_the_gnome_extension() -> None:
    on_gnome = no_tray_help("linux", "ubuntu:GNOME")
    assert on_gnome.startswith("To get the tray icon, on GNOME, install the")
    assert '"AppIndicator and KStatusNotifierItem Support"' in on_gnome
    assert "extensions.gnome.org/extension/615" in on_gnome
    elsewhere = no_tray_help("linux", "XFCE")
    assert "add a system tray" in elsewhere and "AppIndicator" in elsewhere
    assert no_tray_help("linux", None) == elsewhere
    assert "AppIndicator" not in no_tray_help("windows", "GNOME")
