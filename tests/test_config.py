"""Settings: round trip, forgiving load, backups, atomic save."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from trayapp.core import config as cfg
from trayapp.core.model import Port


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.bad-*"))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "config.json"


def test_missing_file_gives_defaults_with_60610(path: Path) -> None:
    result = cfg.load(path)
    assert result.problems == []
    assert [e.port for e in result.config.ports] == [Port(60610, "tcp")]
    assert result.config.ports[0].label == "Bluesky Queue Server (HTTP API)"
    assert not path.exists()  # nothing written until the user saves


def test_round_trip_keeps_everything(path: Path) -> None:
    config = cfg.Config(
        ports=(
            cfg.WatchedPort(Port(8080), "web", notify_start=False),
            cfg.WatchedPort(Port(5353, "udp"), "mdns", muted=True, api_key="secret"),
        ),
        interval=2.5,
        notifications=False,
        start_at_login=True,
        extra={"future_key": [1, 2]},
    )
    cfg.save(path, config)
    loaded = cfg.load(path)
    assert loaded.problems == []
    assert loaded.config == config


@pytest.mark.posix("file modes are POSIX")
def test_saved_file_is_private(path: Path) -> None:
    cfg.save(path, cfg.Config())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\xff\xfe garbage", b'{"ports": [', b"[" * 100000],
    ids=["broken", "empty", "binary", "truncated", "deep"],
)
def test_corrupt_file_is_backed_up_and_defaults_used(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    result = cfg.load(path)
    assert result.config == cfg.Config()
    assert result.message and "not valid JSON" in result.message
    [backup] = backups(path)
    assert backup.read_bytes() == content  # what the user had is kept, byte for byte
    assert result.backup == backup
    assert not path.exists()


def test_partly_valid_config_keeps_valid_parts(path: Path) -> None:
    path.parent.mkdir(parents=True)
    original = {
        "interval": "fast",
        "notifications": False,
        "ports": [
            {"port": 8080, "label": "web"},
            {"port": 70000},
            "nonsense",
            {"port": 5353, "protocol": "udp", "muted": True},
            {"port": 8080, "label": "duplicate"},
        ],
    }
    path.write_text(json.dumps(original))
    result = cfg.load(path)
    config = result.config
    assert [e.port for e in config.ports] == [Port(8080), Port(5353, "udp")]
    assert config.ports[0].label == "web"
    assert config.ports[1].muted is True
    assert config.notifications is False
    assert config.interval == 1.0
    assert len(result.problems) == 4
    [backup] = backups(path)
    assert json.loads(backup.read_text()) == original
    # The repaired file is written, so the next start is quiet.
    again = cfg.load(path)
    assert again.problems == [] and again.config == config


@pytest.mark.parametrize(
    "data",
    [[], 42, "text", None, {"ports": {"port": 1}}, {"interval": 0.1}, {"interval": 1e309}],
)
def test_wrong_shapes_never_raise(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    result = cfg.load(path)
    assert result.problems
    assert 0.5 <= result.config.interval <= 60


def test_directory_in_place_of_file(path: Path) -> None:
    path.mkdir(parents=True)
    result = cfg.load(path)
    assert result.config == cfg.Config()
    assert "folder" in (result.message or "")
    assert backups(path) and backups(path)[0].is_dir()


def test_huge_file_is_moved_aside(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:
        handle.write(b'{"ports": [' + b" " * (cfg.MAX_CONFIG_BYTES + 10) + b"]}")
    result = cfg.load(path)
    assert "larger" in (result.message or "")
    assert backups(path)


def test_labels_are_cleaned(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"ports": [{"port": 80, "label": "a\nb\x00c" + "x" * 500}]}))
    label = cfg.load(path).config.ports[0].label
    assert "\n" not in label and "\x00" not in label
    assert len(label) == cfg.MAX_LABEL


def test_save_failure_leaves_old_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.save(path, cfg.Config(interval=3.0))

    def boom(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        cfg.save(path, cfg.Config(interval=9.0))
    monkeypatch.undo()
    assert cfg.load(path).config.interval == 3.0
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left


def test_stale_temp_files_of_killed_saves_are_removed(path: Path) -> None:
    cfg.save(path, cfg.Config())
    stale = path.parent / ".config.json.abc123.tmp"
    fresh = path.parent / ".config.json.def456.tmp"
    for temp in (stale, fresh):
        temp.write_text('{"half": ')
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert cfg.load(path).problems == []
    assert not stale.exists()
    assert fresh.exists()  # young enough that a save may still be writing it


def test_byte_order_mark_is_accepted(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"interval": 2.0}).encode())
    result = cfg.load(path)
    assert result.problems == [] and result.config.interval == 2.0


def test_unsendable_api_key_is_dropped_and_the_port_kept(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"ports": [{"port": 1, "api_key": "k\u00e9y"}, {"port": 2, "api_key": "ok"}]})
    )
    result = cfg.load(path)
    assert [(e.port.number, e.api_key) for e in result.config.ports] == [(1, None), (2, "ok")]
    assert "API key of port 1" in result.problems[0]
