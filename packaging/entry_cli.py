"""The bundle's `portwatch` executable: the command line (with no command, the tray app)."""

from trayapp.cli import main

raise SystemExit(main())
