"""Small per-OS desktop touches, each a no-op returning False where it does not apply.

None of them may stop the app from starting: every failure is logged and reported as False.
The native libraries are reached through a `LibraryLoader` (ctypes' `cdll`/`windll` by
default) so tests on any OS can hand in a fake one and check the exact calls.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any, Protocol

from trayapp.core.host import OSName
from trayapp.platforms import current_os

log = logging.getLogger(__name__)

DEFAULT_APP_ID = "PortWatch.PortWatch"
LIBOBJC = "/usr/lib/libobjc.A.dylib"
# Loaded for its side effect: NSApplication is only registered with the Objective-C runtime
# once AppKit is in the process, which may not be the case yet before Qt sets up its window.
APPKIT = "/System/Library/Frameworks/AppKit.framework/AppKit"
NS_APPLICATION_ACTIVATION_POLICY_ACCESSORY = 1


class LibraryLoader(Protocol):
    """What is used of `ctypes.cdll` / `ctypes.windll`: load a library by name or path."""

    def LoadLibrary(self, name: str) -> Any: ...


def is_frozen() -> bool:
    """True inside a PyInstaller (or similar) bundle rather than a Python install."""
    return bool(getattr(sys, "frozen", False))


def set_app_user_model_id(
    app_id: str = DEFAULT_APP_ID,
    *,
    loader: LibraryLoader | None = None,
    os_name: OSName | None = None,
) -> bool:
    """Give this process its own AppUserModelID, so Windows toasts and the taskbar name the app
    instead of "Python". Call it before the first window or notification exists."""
    if (os_name or current_os()) != "windows":
        return False
    try:
        libraries = loader if loader is not None else _windll()
        shell32 = libraries.LoadLibrary("shell32")
        # Looked up by item, which yields a fresh function object, so setting its types here
        # cannot change the signature for any other caller of the same export.
        set_id = shell32["SetCurrentProcessExplicitAppUserModelID"]
        set_id.argtypes = [ctypes.c_wchar_p]
        set_id.restype = ctypes.c_long  # HRESULT
        result = set_id(app_id)
    except Exception:
        log.debug("could not set the AppUserModelID", exc_info=True)
        return False
    # Any negative HRESULT is a failure; S_OK is 0.
    return isinstance(result, int) and result >= 0


def _windll() -> LibraryLoader:
    if sys.platform == "win32":
        return ctypes.windll
    raise OSError("ctypes.windll exists only on Windows")


def hide_dock_icon(
    *,
    loader: LibraryLoader | None = None,
    os_name: OSName | None = None,
    bundled: bool | None = None,
) -> bool:
    """Make an unbundled macOS run a menu-bar-only app: no Dock icon, no app menu.

    A bundle gets the same from `LSUIElement` in its Info.plist, so nothing is done there.
    Call it after QApplication exists: Qt promotes a plain executable to a regular (Dock) app
    while it starts, which would undo this if it ran first.
    """
    if (os_name or current_os()) != "macos":
        return False
    if bundled if bundled is not None else is_frozen():
        return False
    try:
        libraries = loader if loader is not None else ctypes.cdll
        libraries.LoadLibrary(APPKIT)
        objc = libraries.LoadLibrary(LIBOBJC)

        get_class = objc["objc_getClass"]
        get_class.restype = ctypes.c_void_p
        get_class.argtypes = [ctypes.c_char_p]
        register_selector = objc["sel_registerName"]
        register_selector.restype = ctypes.c_void_p
        register_selector.argtypes = [ctypes.c_char_p]

        ns_application = get_class(b"NSApplication")
        if not ns_application:
            return False
        # objc_msgSend must be called with the exact prototype of each method (on arm64 a
        # mismatch passes arguments in the wrong registers), so each call gets its own
        # function object with its own argtypes and restype.
        shared_application = objc["objc_msgSend"]
        shared_application.restype = ctypes.c_void_p
        shared_application.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        app = shared_application(ns_application, register_selector(b"sharedApplication"))
        if not app:
            return False

        set_activation_policy = objc["objc_msgSend"]
        set_activation_policy.restype = ctypes.c_bool  # BOOL
        set_activation_policy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
        done = set_activation_policy(
            app,
            register_selector(b"setActivationPolicy:"),
            NS_APPLICATION_ACTIVATION_POLICY_ACCESSORY,
        )
    except Exception:
        log.debug("could not hide the Dock icon", exc_info=True)
        return False
    return bool(done)


# GNOME has had no tray since 3.26; this extension brings StatusNotifierItem icons back.
GNOME_TRAY_EXTENSION = "AppIndicator and KStatusNotifierItem Support"
GNOME_TRAY_EXTENSION_URL = "https://extensions.gnome.org/extension/615/appindicator-support/"


def no_tray_help(os_name: OSName | None = None, desktop: str | None = None) -> str:
    """What to tell a user whose desktop shows no tray, so that they can get one. `desktop` is
    $XDG_CURRENT_DESKTOP (colon-separated names, e.g. 'ubuntu:GNOME')."""
    os_name = os_name or current_os()
    if os_name != "linux":
        return "The menu bar or notification area did not answer; try starting Port Watch again."
    gnome = (
        f'on GNOME, install the "{GNOME_TRAY_EXTENSION}" extension '
        f"({GNOME_TRAY_EXTENSION_URL}), then log out and in again"
    )
    names = {part.strip().lower() for part in (desktop or "").split(":")}
    if "gnome" in names:
        return f"To get the tray icon, {gnome}."
    return "To get the tray icon, add a system tray (status notifier) to your panel; " + gnome + "."
