"""Bringing a window to the user, the same way for every window of the app."""

from __future__ import annotations

import os

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget


def show_window(window: QWidget, activation_token: str | None = None) -> None:
    """Show, raise and activate. On Wayland only the compositor raises windows, and only for an
    xdg-activation token from the user's action: Qt's activateWindow() uses (and then unsets)
    XDG_ACTIVATION_TOKEN, so the token of the click that asked for the window goes there.
    https://wayland.app/protocols/xdg-activation-v1"""
    if activation_token and QGuiApplication.platformName().startswith("wayland"):
        os.environ["XDG_ACTIVATION_TOKEN"] = activation_token
    window.show()
    window.raise_()
    window.activateWindow()
