"""The bundle's tray executable (Windows `Port Watch.exe`, no console window): the tray app."""

from trayapp.cli import tray_main

raise SystemExit(tray_main())
