"""Where Port Watch keeps its files: one place, on platformdirs, overridable for tests.

Setting PORTWATCH_HOME puts config, data, logs and runtime files under that one folder, so a
test (or a portable install) never touches the user's real settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import PlatformDirs

from trayapp import APP_NAME

HOME_ENV = "PORTWATCH_HOME"


def _dirs() -> PlatformDirs:
    return PlatformDirs(APP_NAME, appauthor=False)


def _override(sub: str) -> Path | None:
    home = os.environ.get(HOME_ENV)
    return Path(home) / sub if home else None


def config_dir() -> Path:
    return _override("config") or Path(_dirs().user_config_dir)


def data_dir() -> Path:
    return _override("data") or Path(_dirs().user_data_dir)


def log_dir() -> Path:
    return _override("log") or Path(_dirs().user_log_dir)


def config_file() -> Path:
    return config_dir() / "config.json"


def events_file() -> Path:
    return data_dir() / "events.jsonl"


def service_state_file() -> Path:
    """What the health checks remember between runs (last queue status, last plan seen)."""
    return data_dir() / "service-state.json"
