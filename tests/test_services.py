"""Known services: the bundled file, validation, and identify()'s rules."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from trayapp.core import services
from trayapp.core.services import (
    KnownService,
    ServiceCatalog,
    identify,
    label_for,
    load_catalog,
)

RESOURCE = Path(__file__).resolve().parents[1] / "resources" / "services.json"


def entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ports": [60610],
        "protocol": "tcp",
        "name": "Bluesky Queue Server (HTTP API)",
        "description": "bluesky-httpserver",
        "url": "https://github.com/bluesky/bluesky-httpserver",
        "kind": "service",
        "process_hints": ["bluesky_httpserver", "start-bluesky-httpserver"],
    }
    base.update(overrides)
    return base


def catalog(*entries: dict[str, Any]) -> ServiceCatalog:
    return ServiceCatalog.from_data({"version": 1, "services": list(entries)})


@pytest.fixture
def no_system_services(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(port: int, protocol: str = "tcp") -> str:
        raise OSError("port/proto not found")

    monkeypatch.setattr(socket, "getservbyport", refuse)


# ---- the bundled file ---------------------------------------------------------------------


def test_bundled_file_loads_without_problems() -> None:
    loaded = load_catalog()
    assert loaded.problems == ()
    assert len(loaded.entries) >= 30


def test_resource_locator_finds_the_repository_file() -> None:
    found = services._resource_path("services.json")
    assert found is not None
    assert found.resolve() == RESOURCE


def test_resource_locator_prefers_a_pyinstaller_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "services.json").write_text("{}")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert services._resource_path("services.json") == tmp_path / "resources" / "services.json"


def test_resource_locator_missing_file() -> None:
    assert services._resource_path("no-such-file.json") is None


@pytest.mark.parametrize(
    ("port", "protocol", "name"),
    [
        (60610, "tcp", "Bluesky Queue Server (HTTP API)"),
        (60615, "tcp", "Bluesky RE Manager (ZMQ control)"),
        (60625, "tcp", "Bluesky RE Manager (ZMQ console output)"),
        (6379, "tcp", "Redis"),
        (5064, "tcp", "EPICS Channel Access"),
        (5064, "udp", "EPICS Channel Access"),
        (5065, "udp", "EPICS CA Repeater"),
        (5075, "tcp", "EPICS PV Access"),
        (5076, "udp", "EPICS PV Access (search)"),
        (8888, "tcp", "Jupyter"),
        (5432, "tcp", "PostgreSQL"),
        (27017, "tcp", "MongoDB"),
        (5353, "udp", "mDNS (Bonjour, Avahi)"),
    ],
)
def test_bundled_defaults(port: int, protocol: str, name: str) -> None:
    found = load_catalog().identify(port, protocol, os_name="linux", system_fallback=False)
    assert found is not None
    assert found.name == name
    assert not found.certain


def test_bundled_protocols_are_respected() -> None:
    bundled = load_catalog()
    assert bundled.identify(5065, "tcp", os_name="linux", system_fallback=False) is None
    assert bundled.identify(5075, "udp", os_name="linux", system_fallback=False) is None


def test_bundled_8000_is_tiled_or_a_dev_server() -> None:
    found = load_catalog().identify(8000, os_name="linux", system_fallback=False)
    assert found is not None
    assert found.kind == "ambiguous"
    assert not found.certain
    assert "Tiled (Bluesky data service)" in found.candidates
    assert " or " in found.name


def test_bundled_tiled_confirmed_by_its_command_line() -> None:
    cmdline = "/opt/venv/bin/python /opt/venv/bin/tiled serve catalog --temp"
    found = load_catalog().identify(8000, "tcp", [cmdline], os_name="linux")
    assert found is not None
    assert found.name == "Tiled (Bluesky data service)"
    assert found.certain


def test_bundled_uvicorn_running_tiled_is_tiled() -> None:
    # Both "uvicorn" (dev server) and "tiled.server" (Tiled) match: the more specific wins.
    cmdline = "uvicorn tiled.server.app:build_app --factory --port 8000"
    found = load_catalog().identify(8000, "tcp", [cmdline], os_name="linux")
    assert found is not None and found.certain
    assert found.name.startswith("Tiled")


def test_bundled_plain_uvicorn_is_a_dev_server() -> None:
    found = load_catalog().identify(8000, "tcp", ["uvicorn main:app --reload"], os_name="linux")
    assert found is not None and found.certain
    assert found.name == "Python web development server"


def test_bundled_httpserver_via_uvicorn() -> None:
    cmdline = "python -m uvicorn --host localhost --port 60610 bluesky_httpserver.server:app"
    found = load_catalog().identify(60610, "tcp", [cmdline], os_name="linux")
    assert found is not None and found.certain
    assert found.url == "https://github.com/bluesky/bluesky-httpserver"


def test_bundled_airplay_only_on_macos() -> None:
    bundled = load_catalog()
    on_linux = bundled.identify(5000, os_name="linux", system_fallback=False)
    on_macos = bundled.identify(5000, os_name="macos", system_fallback=False)
    assert on_linux is not None and on_linux.name == "Flask development server"
    assert on_macos is not None and on_macos.kind == "ambiguous"
    confirmed = bundled.identify(
        5000,
        "tcp",
        ["/System/Library/CoreServices/ControlCenter.app/Contents/MacOS/ControlCenter"],
        os_name="macos",
    )
    assert confirmed is not None and confirmed.certain
    assert confirmed.name == "macOS AirPlay Receiver"


def test_module_level_helpers() -> None:
    assert label_for(60610, os_name="linux") == "Bluesky Queue Server (HTTP API)"
    found = identify(60610, "tcp", ["start-bluesky-httpserver"], os_name="linux")
    assert found is not None and found.certain


# ---- identify()'s rules on small catalogs -------------------------------------------------


def test_hint_match_is_certain() -> None:
    found = catalog(entry()).identify(
        60610, "tcp", ["/usr/bin/start-bluesky-httpserver"], os_name="linux"
    )
    assert found == KnownService(
        name="Bluesky Queue Server (HTTP API)",
        description="bluesky-httpserver",
        certain=True,
        url="https://github.com/bluesky/bluesky-httpserver",
        kind="service",
    )


def test_hints_are_case_insensitive_and_match_process_names() -> None:
    found = catalog(entry(process_hints=["postgres"], ports=[5432], name="PostgreSQL")).identify(
        5432, "tcp", ["POSTGRES.EXE"], os_name="linux"
    )
    assert found is not None and found.certain


def test_hints_match_whole_words_only() -> None:
    dns = entry(ports=[53], name="DNS", process_hints=["named"])
    found = catalog(dns).identify(
        53, "tcp", ["unnamed-helper /usr/bin/unnamed-helper -d"], os_name="linux"
    )
    assert found is not None
    assert not found.certain
    assert found.owner_differs


def test_single_entry_without_evidence_is_a_guess(no_system_services: None) -> None:
    found = catalog(entry()).identify(60610, os_name="linux")
    assert found is not None
    assert found.name == "Bluesky Queue Server (HTTP API)"
    assert not found.certain
    assert not found.owner_differs


def test_owner_that_does_not_match_is_flagged() -> None:
    found = catalog(entry()).identify(
        60610, "tcp", ["python3 -m http.server 60610"], os_name="linux"
    )
    assert found is not None
    assert not found.certain
    assert found.owner_differs


def test_a_bare_interpreter_name_does_not_contradict() -> None:
    # The command line was denied (Windows services, other users): only the name is known.
    found = catalog(entry()).identify(60610, "tcp", ["python.exe"], os_name="linux")
    assert found is not None
    assert not found.certain and not found.owner_differs


def test_entry_without_hints_is_never_contradicted() -> None:
    found = catalog(entry(process_hints=[])).identify(
        60610, "tcp", ["java -jar anything.jar"], os_name="linux"
    )
    assert found is not None
    assert not found.certain and not found.owner_differs


def test_several_candidates_without_evidence_are_combined() -> None:
    tiled = entry(ports=[8000], name="Tiled", process_hints=["tiled serve"])
    dev = entry(ports=[8000], name="a development server", kind="common", process_hints=["uvicorn"])
    django = entry(ports=[8000], name="Django", kind="common", process_hints=["runserver"])
    two = catalog(tiled, dev).identify(8000, os_name="linux")
    assert two is not None
    assert two.name == "Tiled or a development server"
    assert two.kind == "ambiguous"
    assert two.candidates == ("Tiled", "a development server")
    assert not two.certain
    assert two.url is None
    three = catalog(tiled, dev, django).identify(8000, "tcp", ["java -jar x.jar"], os_name="linux")
    assert three is not None
    assert three.name == "Tiled, a development server or Django"


def test_evidence_picks_among_candidates() -> None:
    tiled = entry(ports=[8000], name="Tiled", process_hints=["tiled serve"])
    dev = entry(ports=[8000], name="Dev", kind="common", process_hints=["uvicorn"])
    found = catalog(tiled, dev).identify(
        8000, "tcp", ["python", "uvicorn app:app"], os_name="linux"
    )
    assert found is not None
    assert (found.name, found.certain, found.kind) == ("Dev", True, "common")


def test_equal_evidence_stays_ambiguous() -> None:
    a = entry(ports=[9090], name="A", process_hints=["same"])
    b = entry(ports=[9090], name="B", process_hints=["same"])
    c = entry(ports=[9090], name="C", process_hints=["other"])
    found = catalog(a, b, c).identify(9090, "tcp", ["same"], os_name="linux")
    assert found is not None
    assert found.candidates == ("A", "B")
    assert not found.certain


def test_protocol_must_match(no_system_services: None) -> None:
    assert catalog(entry()).identify(60610, "udp", os_name="linux") is None


def test_fallback_to_the_system_services_list(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[int, str]] = []

    def fake(port: int, protocol: str = "tcp") -> str:
        asked.append((port, protocol))
        return "ssh"

    monkeypatch.setattr(socket, "getservbyport", fake)
    found = catalog(entry()).identify(22, os_name="linux")
    assert asked == [(22, "tcp")]
    assert found is not None
    assert (found.name, found.certain, found.kind, found.url) == ("ssh", False, "system", None)


def test_fallback_handles_unknown_ports(no_system_services: None) -> None:
    assert catalog(entry()).identify(47123, os_name="linux") is None


@pytest.mark.parametrize("error", [OSError("not found"), OverflowError("too big")])
def test_fallback_errors_mean_unknown(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def fail(port: int, protocol: str = "tcp") -> str:
        raise error

    monkeypatch.setattr(socket, "getservbyport", fail)
    assert catalog().identify(12345, os_name="linux") is None


def test_real_getservbyport_does_not_raise() -> None:
    # Whatever this machine's services file says (minimal containers have none).
    for port in (22, 80, 47123, 65535):
        result = ServiceCatalog().identify(port, os_name="linux")
        assert result is None or result.kind == "system"


def test_label_for_leaves_out_system_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getservbyport", lambda port, protocol="tcp": "ircu")
    assert catalog(entry()).label_for(6667, os_name="linux") is None
    assert catalog(entry()).label_for(60610, os_name="linux") == "Bluesky Queue Server (HTTP API)"


def test_os_filter() -> None:
    mac_only = entry(ports=[7000], name="AirPlay", os=["macos"])
    assert catalog(mac_only).label_for(7000, os_name="macos") == "AirPlay"
    assert catalog(mac_only).label_for(7000, os_name="linux") is None


# ---- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"ports": []}, "'ports'"),
        ({"ports": [0]}, "'ports' holds 0"),
        ({"ports": [70000]}, "'ports' holds 70000"),
        ({"ports": [True]}, "'ports' holds True"),
        ({"ports": ["80"]}, "'ports' holds '80'"),
        ({"ports": 80}, "'ports'"),
        ({"protocol": "sctp"}, "'protocol'"),
        ({"protocol": []}, "'protocol'"),
        ({"name": ""}, "'name'"),
        ({"name": None}, "'name'"),
        ({"name": "two\nlines"}, "'name'"),
        ({"description": "x" * 500}, "'description' is longer"),
        ({"url": "ftp://example.org"}, "'url'"),
        ({"url": 5}, "'url'"),
        ({"kind": "maybe"}, "'kind'"),
        ({"process_hints": "bluesky"}, "'process_hints'"),
        ({"process_hints": [""]}, "'process_hints'"),
        ({"os": ["beos"]}, "'os' holds 'beos'"),
    ],
)
def test_broken_entry_is_skipped_with_a_message(overrides: dict[str, Any], words: str) -> None:
    good = entry(ports=[6379], name="Redis", process_hints=["redis-server"])
    loaded = catalog(entry(**overrides), good)
    assert [e.name for e in loaded.entries] == ["Redis"]
    assert len(loaded.problems) == 1
    assert words in loaded.problems[0]
    assert "entry 1" in loaded.problems[0]
    assert "skipped" in loaded.problems[0]


def test_non_object_entry() -> None:
    loaded = catalog("not an entry", entry())  # type: ignore[arg-type]
    assert len(loaded.entries) == 1
    assert "entry 1" in loaded.problems[0]


def test_unknown_key_is_noted_but_kept() -> None:
    loaded = catalog(entry(proces_hints=["typo"]))
    assert len(loaded.entries) == 1
    assert "unknown key 'proces_hints'" in loaded.problems[0]


def test_protocol_list_and_defaults() -> None:
    loaded = catalog(
        {"ports": [5064], "protocol": ["tcp", "udp"], "name": "CA", "description": "d"}
    )
    (only,) = loaded.entries
    assert only.protocols == ("tcp", "udp")
    assert only.kind == "service" and only.url is None and only.process_hints == ()


@pytest.mark.parametrize("data", [None, [], {"services": {}}, {"version": 1}])
def test_wrong_top_level(data: object) -> None:
    loaded = ServiceCatalog.from_data(data)
    assert loaded.entries == ()
    assert "'services' list" in loaded.problems[0]


def test_load_missing_file(tmp_path: Path) -> None:
    loaded = load_catalog(tmp_path / "services.json")
    assert loaded.entries == ()
    assert "cannot be read" in loaded.problems[0]


def test_load_broken_json(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_text('{"services": [', encoding="utf-8")
    loaded = load_catalog(path)
    assert loaded.entries == ()
    assert "not valid JSON" in loaded.problems[0]


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_bytes(b"\xff\xfe\x00")
    assert "cannot be read" in load_catalog(path).problems[0]


def test_load_without_the_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "_resource_path", lambda name: None)
    loaded = load_catalog()
    assert loaded.entries == ()
    assert "not found" in loaded.problems[0]


def test_bundled_file_is_plain_data() -> None:
    data = json.loads(RESOURCE.read_text(encoding="utf-8"))
    for raw in data["services"]:
        assert raw["kind"] in ("service", "common")
        assert "\n" not in raw["description"]
    names = [(raw["name"], tuple(raw["ports"])) for raw in data["services"]]
    assert len(names) == len(set(names))
