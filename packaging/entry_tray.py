"""The bundle's tray executable (Windows `Port Watch.exe`, no console window): the tray app."""

from trayapp.ui.app import main

raise SystemExit(main())
