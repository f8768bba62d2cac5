"""`portwatch prometheus-config` checked by the programs that read it: blackbox_exporter's
--config.check, promtool check config, real blackbox probes through /probe, and a real
Prometheus that runs the generated scrape jobs (the README's blackbox recipe, as written)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.monitoring_support import (
    LOOPBACK,
    blackbox_exporter,
    http_get,
    prometheus,
    value,
    wait_for,
)
from tests.probe_servers import BlueskyLike, serve
from tests.support import free_port, require_tools

KEY = "lab-K3y_only-in-a-file"


def portwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "prometheus-config", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def generated(*args: str) -> str:
    result = portwatch(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def write_config(home: Path, entries: list[dict[str, object]]) -> None:
    path = home / "config" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ports": entries}))


def blackbox_check(config: Path) -> subprocess.CompletedProcess[str]:
    require_tools("prometheus-blackbox-exporter")
    return subprocess.run(
        ["prometheus-blackbox-exporter", f"--config.file={config}", "--config.check"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_blackbox_accepts_the_modules_and_rejects_a_broken_file(
    tmp_path: Path, portwatch_home: Path
) -> None:
    write_config(portwatch_home, [{"port": 60610, "api_key": KEY}, {"port": 8080}])
    for extra in ([], ["--api-key-file", "/etc/prometheus/bluesky.key"]):
        text = generated("--only", "blackbox", *extra)
        config = tmp_path / "blackbox.yml"
        config.write_text(text)
        checked = blackbox_check(config)
        assert checked.returncode == 0, checked.stderr
        assert "Config file is ok" in checked.stderr
        assert "portwatch_tcp:" in text and "portwatch_bluesky:" in text
        assert KEY not in text  # the key in Settings is never copied out
    assert 'credentials_file: "/etc/prometheus/bluesky.key"' in text
    assert "type: ApiKey" in text
    # the check can fail: the same file with a typo in a field name
    config.write_text(text.replace("prober: tcp", "probr: tcp"))
    assert blackbox_check(config).returncode != 0


def test_the_key_in_settings_is_pointed_out_not_copied(portwatch_home: Path) -> None:
    write_config(portwatch_home, [{"port": 60610, "api_key": KEY}])
    result = portwatch("--host", "beamline-1")
    assert result.returncode == 0
    assert KEY not in result.stdout + result.stderr
    assert "60610/tcp has an API key in Settings; give --api-key-file PATH" in result.stderr


def test_promtool_accepts_the_scrape_jobs(tmp_path: Path, portwatch_home: Path) -> None:
    require_tools("promtool")
    write_config(
        portwatch_home, [{"port": 60610}, {"port": 6379}, {"port": 5353, "protocol": "udp"}]
    )
    text = generated(
        "--only", "scrape", "--host", "beamline-1.lab.example", "--host", "::1",
        "--host", "10.0.0.7", "--exporter", "blackbox.lab.example:9115",
    )  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for target in ("beamline-1.lab.example:6379", "[::1]:60610", "10.0.0.7:60610"):
        assert f'- "{target}"' in text
    assert '- "http://[::1]:60610/api/status"' in text
    assert 'replacement: "blackbox.lab.example:9115"' in text
    assert "5353/udp: blackbox_exporter cannot probe a UDP port" in text
    assert '"beamline-1.lab.example:5353"' not in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--host", "two words"], "'two words' is not a host name or IP address"),
        (["--host", "evil\nhost"], "is not a host name or IP address"),
        (["--exporter", "nohostport"], "'nohostport' is not HOST:PORT"),
        (["--exporter", "h:70000"], "'h:70000' is not HOST:PORT"),
        (["--api-key-file", "relative.key"], "'relative.key' is not an absolute path"),
        (["--only", "both"], "invalid choice: 'both'"),
        (["70000"], "'70000' is not a port"),
    ],
)
def test_bad_input_is_one_line(args: list[str], says: str) -> None:
    result = portwatch(*args)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert says in line


def probe(exporter: int, module: str, target: str) -> str:
    query = urllib.parse.urlencode({"module": module, "target": target})
    status, text = http_get(f"http://{LOOPBACK}:{exporter}/probe?{query}", timeout=10)
    assert status == 200, text
    return text


def test_real_blackbox_probes_with_the_generated_modules(
    tmp_path: Path, portwatch_home: Path
) -> None:
    key_file = tmp_path / "bluesky.key"
    key_file.write_text(KEY + "\n")  # as an editor saves it: the line feed is not sent
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_text("not-the-key\n")
    with socket.socket() as listener, serve(BlueskyLike, api_key=KEY) as bluesky:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        port = listener.getsockname()[1]
        # not on 60610: its label in Settings says it is a Bluesky server
        write_config(portwatch_home, [{"port": bluesky.port, "label": "Bluesky (beamline 2)"}])
        specs = [str(port), str(bluesky.port)]
        for name, key in (("right", key_file), ("wrong", wrong_key)):
            text = generated(*specs, "--api-key-file", str(key), "--only", "blackbox")
            (tmp_path / f"{name}.yml").write_text(text)
        status_url = f"http://{LOOPBACK}:{bluesky.port}/api/status"
        with blackbox_exporter(tmp_path / "right.yml") as exporter:
            tcp = probe(exporter, "portwatch_tcp", f"{LOOPBACK}:{port}")
            assert value(tcp, "probe_success") == 1
            closed = probe(exporter, "portwatch_tcp", f"{LOOPBACK}:{free_port()}")
            assert value(closed, "probe_success") == 0
            answered = probe(exporter, "portwatch_bluesky", status_url)
            assert value(answered, "probe_success") == 1
            assert value(answered, "probe_http_status_code") == 200
        assert bluesky.header_values("/api/status", "Authorization") == [[f"ApiKey {KEY}"]]
        with blackbox_exporter(tmp_path / "wrong.yml") as exporter:
            refused = probe(exporter, "portwatch_bluesky", status_url)
            assert value(refused, "probe_success") == 0
            assert value(refused, "probe_http_status_code") == 401


def test_prometheus_runs_the_generated_jobs(tmp_path: Path, portwatch_home: Path) -> None:
    """The blackbox recipe as the README gives it: modules into blackbox.yml, jobs into
    prometheus.yml with --exporter pointing at the exporter; then probe_success in PromQL."""
    with serve(BlueskyLike, api_key=KEY) as bluesky, socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        port = listener.getsockname()[1]
        write_config(
            portwatch_home,
            [{"port": port}, {"port": bluesky.port, "label": "Bluesky beamline 1", "api_key": KEY}],
        )
        key_file = tmp_path / "bluesky.key"
        key_file.write_text(KEY)
        key_file.chmod(0o600)
        modules = tmp_path / "blackbox.yml"
        modules.write_text(generated("--only", "blackbox", "--api-key-file", str(key_file)))
        with blackbox_exporter(modules) as exporter:
            jobs = generated(
                "--only", "scrape", "--host", LOOPBACK, "--exporter", f"{LOOPBACK}:{exporter}"
            )
            config = "global:\n  scrape_interval: 1s\n" + jobs
            with prometheus(config, tmp_path / "prometheus") as server:

                def success(job: str, target_port: int) -> float | None:
                    query = urllib.parse.quote(f'probe_success{{job="{job}",port="{target_port}"}}')
                    status, body = http_get(
                        f"http://{LOOPBACK}:{server}/api/v1/query?query={query}"
                    )
                    assert status == 200, body
                    result = json.loads(body)["data"]["result"]
                    return float(result[0]["value"][1]) if len(result) == 1 else None

                wait_for("TCP probe of the listener", lambda: success("portwatch_tcp", port) == 1)
                wait_for(
                    "HTTP probe of the Bluesky server with its key",
                    lambda: success("portwatch_bluesky", bluesky.port) == 1,
                )
                # Each target has its own first scrape: wait for this one too.
                wait_for(
                    "TCP probe of the Bluesky server",
                    lambda: success("portwatch_tcp", bluesky.port) == 1,
                )
    assert KEY not in modules.read_text() + jobs
