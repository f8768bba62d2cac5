"""Helper for tests/test_reliability.py: save two settings versions in turn until killed.

    python tests/save_loop.py <config.json>

Prints "ready" once imported, then saves VERSIONS[0], VERSIONS[1], VERSIONS[0], ... with
trayapp.core.config.save (temp file + fsync + os.replace) for ever. The test kills it with
SIGKILL at random moments and checks that config.json is always exactly one of the two.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository importable without site
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trayapp.core import config as cfg
from trayapp.core.model import Port


def versions() -> tuple[cfg.Config, cfg.Config]:
    """A small and a large version, so that a half-written file could never pass for either."""
    small = cfg.Config(
        ports=(cfg.WatchedPort(Port(60610), "Bluesky Queue Server (HTTP API)"),),
        interval=1.0,
    )
    large = cfg.Config(
        ports=tuple(
            cfg.WatchedPort(
                Port(20000 + i, "udp" if i % 3 == 0 else "tcp"),
                f"service number {i} with a label long enough to fill the file",
                notify_start=i % 2 == 0,
                muted=i % 5 == 0,
                api_key=f"key-{i:04d}" if i % 7 == 0 else None,
            )
            for i in range(cfg.MAX_WATCHED)
        ),
        interval=2.5,
        notifications=False,
        extra={"written_by": "save_loop", "blob": "x" * 4000},
    )
    return small, large


def main(path: Path) -> None:
    first, second = versions()
    print("ready", flush=True)
    while True:
        cfg.save(path, first)
        cfg.save(path, second)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
