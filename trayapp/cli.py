"""`portwatch`: the command line over the core. Imports no Qt unless it starts the tray."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from trayapp import __version__
from trayapp.core import alive, metrics, nagios, paths, remote_report, report, textfile, timeline
from trayapp.core import config as cfg
from trayapp.core import prometheus_config as promconf
from trayapp.core.apikey import KeyChoice, choose_key
from trayapp.core.commands import commands_on_server
from trayapp.core.diagnosis import diagnose
from trayapp.core.events import WATCH_KINDS, Event, parse_iso_time
from trayapp.core.health_monitor import HealthMonitor, outcome_events
from trayapp.core.history import EventLog
from trayapp.core.inspection import make_report
from trayapp.core.model import Port, PortState, Snapshot
from trayapp.core.ports import PortSpecError, parse_port, parse_ports
from trayapp.core.probe import ProbeResult
from trayapp.core.ranges import explain_on, explanation_text
from trayapp.core.remote import (
    RemoteCheck,
    RemoteSettings,
    RemoteSpecError,
    RemoteTarget,
    check_remote,
    looks_remote,
    parse_remote,
    reach,
)
from trayapp.core.remote_monitor import RemoteEntry, RemoteMonitor, port_of
from trayapp.core.scanning import ScanError, Scanner, timed_scan
from trayapp.core.service_check import CheckOutcome, ServiceMemory, run_check
from trayapp.core.status import port_label
from trayapp.core.watcher import Watcher
from trayapp.core.writeback import HistoryWriter
from trayapp.platforms import current_os, host_facts

EXIT_OK, EXIT_FREE, EXIT_USAGE, EXIT_SCAN_FAILED = 0, 1, 2, 3
SPEC_HELP = (
    "ports: 60610, 60610/tcp, 5353/udp, 8000-8010, lists separated by commas or spaces; "
    "on another machine: host:60610, [fd00::5]:60610, http(s)://host:60610/prefix"
)


MAX_ERROR = 300


def one_line(text: str) -> str:
    """What the user typed comes back in errors: escape control characters (no line breaks or
    terminal escapes reach stderr) and keep it to one readable line."""
    escaped = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return escaped if len(escaped) <= MAX_ERROR else escaped[: MAX_ERROR - 3] + "..."


class UsageError(Exception):
    """Bad input: printed as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, no usage dump: scripts read stderr, people read the hint.
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _scanner() -> Scanner:
    from trayapp.platforms.scanners import create_scanner

    return create_scanner()


def _ports(specs: Sequence[str]) -> list[Port]:
    try:
        return parse_ports(" ".join(specs))
    except PortSpecError as exc:
        raise UsageError(str(exc)) from None


def _split(specs: Sequence[str]) -> tuple[list[str], list[RemoteTarget]]:
    """Local port specs, and the other machines' entries (each a word with a host)."""
    local, remote = [], []
    for spec in specs:
        for word in spec.split():
            if looks_remote(word):
                try:
                    remote.append(parse_remote(word))
                except RemoteSpecError as exc:
                    raise UsageError(str(exc)) from None
            else:
                local.append(word)
    return local, list(dict.fromkeys(remote))


def _remote_settings(target: RemoteTarget, settings: cfg.Config) -> RemoteSettings:
    entry = settings.remote(target)
    key = remote_report.key_for(target, entry.api_key if entry else None)
    return entry.remote_settings(key) if entry else RemoteSettings(key)


def _remote_label(target: RemoteTarget, settings: cfg.Config) -> str:
    entry = settings.remote(target)
    return entry.label if entry else ""


def _seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds from `low` to `high`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"'{text}' is out of range: use {low:g} to {high:g} seconds"
            )
        return value

    return parse


_interval = _seconds(0.05, 3600)


def _health_interval(text: str) -> float | None:
    try:
        return cfg.parse_health_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("'health_interval'", "it")) from None


NOT_GIVEN = object()  # an option left out (None is taken: it means "off")


def _given(args: argparse.Namespace, name: str, default: object) -> object:
    value = getattr(args, name)
    return default if value is NOT_GIVEN else value


_refresh = _seconds(1, textfile.REFRESH_S)
_timeout = _seconds(0, 7 * 86400)


_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _since(text: str) -> float:
    """A moment in the past: '90m', '2h', '3d', '1w', or a date/time like 2026-11-01T08:00."""
    value = text.strip().lower()
    for unit, seconds in sorted(_UNITS.items(), key=lambda kv: -len(kv[0])):
        number = value.removesuffix(unit)
        if number != value and number.replace(".", "", 1).isdigit():
            return time.time() - float(number) * seconds
    try:
        return parse_iso_time(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a time: use a duration like 2h, 3d, 1w or a date like 2026-11-01"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="portwatch",
        description="What is on this port, and tell me when that changes. "
        "With no command, starts the tray app.",
    )
    parser.add_argument("--version", action="version", version=f"portwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = sub.add_parser("check", help="what is listening on these ports, and who owns it")
    check.add_argument("specs", nargs="+", metavar="SPEC", help=SPEC_HELP)
    check.add_argument("--json", action="store_true", help="print a JSON list")
    check.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="don't look at the service's health (HTTP on loopback, a few seconds at most)",
    )
    check.add_argument(
        "--nagios",
        action="store_true",
        help="a Nagios/Icinga plugin: one status line with perfdata, "
        "exit 0 OK, 1 WARNING (unhealthy), 2 CRITICAL, 3 UNKNOWN (bad input, scan failed)",
    )
    check.add_argument(
        "--expect",
        choices=("listening", "free"),
        default="listening",
        help="what is right for the ports (default listening; 'free': the ports must stay free)",
    )

    explain = sub.add_parser("explain", help="what a port's range is for")
    explain.add_argument("port", metavar="PORT", help="a port number, optionally /tcp or /udp")
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.add_argument(
        "--no-scan",
        dest="now",
        action="store_false",
        help="only the range; skip the diagnosis of what holds the port right now",
    )

    watch = sub.add_parser("watch", help="print one line per change until interrupted")
    watch.add_argument("specs", nargs="+", metavar="SPEC", help=SPEC_HELP)
    watch.add_argument("--interval", type=_interval, default=1.0, help="seconds between scans")
    watch.add_argument("--json", action="store_true", help="JSON Lines, as in events.jsonl")
    watch.add_argument("--log", action="store_true", help="also append to the events log")
    watch.add_argument(
        "--health-interval",
        type=_health_interval,
        # Not given: a remote entry keeps its own interval from Settings.
        default=NOT_GIVEN,
        metavar="SECONDS",
        help="seconds between health checks of listening ports (2-600, or off; default 10)",
    )
    watch.add_argument(
        "--textfile",
        metavar="DIR",
        help=f"keep DIR/{textfile.FILE_NAME} current for node_exporter's textfile collector",
    )
    watch.add_argument(
        "--refresh",
        type=_refresh,
        default=textfile.REFRESH_S,
        help="with --textfile: rewrite the file at least this often, in seconds (default "
        f"{textfile.REFRESH_S:g}); changes, health changes included, are written at once",
    )
    watch.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="don't check the services' health (the same as --health-interval off)",
    )

    metrics_cmd = sub.add_parser(
        "metrics", help="Prometheus metrics of these ports (default: the watched ports)"
    )
    metrics_cmd.add_argument("specs", nargs="*", metavar="SPEC", help=SPEC_HELP)
    metrics_cmd.add_argument(
        "--textfile",
        metavar="DIR",
        help=f"write DIR/{textfile.FILE_NAME} atomically instead of printing "
        "(node_exporter --collector.textfile.directory)",
    )
    metrics_cmd.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="don't check the services' health (HTTP on loopback, a few seconds at most)",
    )

    promconf_cmd = sub.add_parser(
        "prometheus-config",
        help="blackbox_exporter modules and scrape jobs for a central Prometheus",
    )
    promconf_cmd.add_argument(
        "specs", nargs="*", metavar="SPEC", help="ports to probe (default: the watched ports)"
    )
    promconf_cmd.add_argument(
        "--host",
        action="append",
        metavar="HOST",
        help="a machine to probe, as Prometheus reaches it; repeat for more "
        "(default: this machine's name)",
    )
    promconf_cmd.add_argument(
        "--exporter",
        default=promconf.DEFAULT_EXPORTER,
        metavar="HOST:PORT",
        help=f"where blackbox_exporter listens, seen from Prometheus (default "
        f"{promconf.DEFAULT_EXPORTER})",
    )
    promconf_cmd.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="the file on the Prometheus server holding the Bluesky API key "
        "(referred to, never copied into the output)",
    )
    promconf_cmd.add_argument(
        "--only",
        choices=("blackbox", "scrape"),
        help="print only blackbox.yml's modules or only the scrape jobs",
    )

    wait = sub.add_parser("wait", help="exit 0 once every port listens, 1 on timeout")
    wait.add_argument("specs", nargs="+", metavar="SPEC", help=SPEC_HELP)
    wait.add_argument(
        "--healthy",
        action="store_true",
        help="also wait until each service passes its health check (a Bluesky server: its "
        "RE Manager answers); a port with no health check only needs to listen",
    )
    wait.add_argument("--timeout", type=_timeout, required=True, help="seconds to wait at most")
    wait.add_argument("--interval", type=_interval, default=0.25, help="seconds between scans")

    history = sub.add_parser("history", help="past changes of ports, with up/down times")
    history.add_argument("specs", nargs="*", metavar="SPEC", help="only these ports")
    history.add_argument(
        "--since", type=_since, help="e.g. 2h, 3d, 1w or 2026-11-01T08:00 (default: everything)"
    )
    form = history.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON")
    form.add_argument("--csv", action="store_true", help="print CSV")
    form.add_argument(
        "--timeline",
        action="store_true",
        help="a strip per port: up, unhealthy, down, not watched (default: the last day)",
    )

    tray = sub.add_parser("tray", help="start the tray app (the default)")
    tray.add_argument("specs", nargs="*", metavar="SPEC", help="extra ports for this run")
    tray.add_argument("--debug", action="store_true", help="log more")
    tray.add_argument(
        "--quit",
        action="store_true",
        help="ask the running tray app to quit (exit 0 if it did, 1 if none runs)",
    )
    return parser


def _saved_settings() -> cfg.Config:
    # Read-only: the command line never moves or rewrites the user's settings file.
    return cfg.load(paths.config_file(), repair=False).config


def _labels(ports: Sequence[Port], settings: cfg.Config) -> dict[Port, str]:
    return {port: port_label(settings, port, current_os()) for port in ports}


def _probe_all(snapshot: Snapshot, settings: cfg.Config) -> dict[Port, ProbeResult]:
    """Health of every listening TCP port (HTTP on loopback, a second or two per port)."""
    results = {}
    for state in snapshot.states:
        if state.listening and state.port.protocol == "tcp":
            entry = settings.watched(state.port)
            key = choose_key(entry.api_key if entry else None)
            results[state.port] = run_check(state, ServiceMemory(), key).result
    return results


def _textfile_folder(text: str) -> Path:
    try:
        return textfile.check_folder(text)
    except textfile.TextfileError as exc:
        raise UsageError(f"--textfile: {exc}") from None


def _configured_ports(specs: Sequence[str], settings: cfg.Config) -> list[Port]:
    ports = _ports(specs) if specs else [entry.port for entry in settings.ports]
    if not ports:
        raise UsageError(
            "no ports given and none watched in Settings: give SPEC (" + SPEC_HELP + ")"
        )
    return ports


def cmd_check(args: argparse.Namespace) -> int:
    if args.nagios:
        return _check_nagios(args)
    local, targets = _split(args.specs)
    if targets:
        return _check_remote(args, local, targets)
    ports = _ports(args.specs)
    scanner = _scanner()
    try:
        snapshot = scanner.scan(ports, connections=True)
    except ScanError as exc:
        print(f"portwatch check: could not scan: {exc}", file=sys.stderr)
        return EXIT_SCAN_FAILED
    finally:
        scanner.close()
    settings = _saved_settings()
    host = host_facts()
    reports = []
    for state in snapshot.states:
        entry = settings.watched(state.port)
        label = port_label(settings, state.port, host.os_name)
        reports.append(
            make_report(
                state,
                host,
                label=label,
                api_key=entry.api_key if entry else None,
                probe=args.probe,
            )
        )
    if args.json:
        print(json.dumps([report.state_json(r) for r in reports], indent=2))
    else:
        print("\n\n".join(report.state_text(r) for r in reports))
        for problem in snapshot.problems:
            print(f"note: {problem}", file=sys.stderr)
    want = args.expect == "listening"
    return EXIT_OK if all(s.listening == want for s in snapshot.states) else EXIT_FREE


def _check_remote(args: argparse.Namespace, local: list[str], targets: list[RemoteTarget]) -> int:
    """check with entries on other machines (and maybe local ports too)."""
    ports = _ports(local) if local else []  # a bad spec is refused before anything is contacted
    settings = _saved_settings()
    checks: list[tuple[RemoteCheck, str]] = []
    for target in targets:
        remote_settings = _remote_settings(target, settings)
        check = (
            check_remote(target, remote_settings)
            if args.probe
            else _connect_only(target, remote_settings)
        )
        checks.append((check, _remote_label(target, settings)))
    code = EXIT_OK
    local_json: list[object] = []
    if ports:
        scanner = _scanner()
        try:
            snapshot = scanner.scan(ports, connections=True)
        except ScanError as exc:
            print(f"portwatch check: could not scan: {exc}", file=sys.stderr)
            return EXIT_SCAN_FAILED
        finally:
            scanner.close()
        host = host_facts()
        reports = []
        for state in snapshot.states:
            entry = settings.watched(state.port)
            label = port_label(settings, state.port, host.os_name)
            api_key = entry.api_key if entry else None
            reports.append(make_report(state, host, label=label, api_key=api_key, probe=args.probe))
        if args.json:
            local_json = [report.state_json(r) for r in reports]
        else:
            print("\n\n".join(report.state_text(r) for r in reports), end="\n\n")
        want = args.expect == "listening"
        if not all(s.listening == want for s in snapshot.states):
            code = EXIT_FREE
    if args.json:
        remote_json = [
            remote_report.check_json(check, commands_on_server(check.target.port), label)
            for check, label in checks
        ]
        print(json.dumps(local_json + remote_json, indent=2))
    else:
        texts = (
            remote_report.check_text(check, commands_on_server(check.target.port), label)
            for check, label in checks
        )
        print("\n\n".join(texts))
    want_up = args.expect == "listening"
    if not all(check.up == want_up for check, _label in checks):
        code = EXIT_FREE
    return code


def _check_nagios(args: argparse.Namespace) -> int:
    if args.json:
        raise UsageError("--nagios and --json do not go together: choose one output")
    local, targets = _split(args.specs)
    ports = _ports(local) if local else []
    snapshot = _timed_scan(ports)
    if isinstance(snapshot, str):
        result = nagios.unknown(snapshot)
        sys.stdout.write(result.output)
        return result.code
    settings = _saved_settings()
    probe = args.probe and args.expect == "listening"
    probes = _probe_all(snapshot, settings) if probe else {}
    checks = _remote_checks(targets, settings, probe)
    labels = _labels(ports + [port_of(target) for target in targets], settings)
    result = nagios.evaluate(
        snapshot, expect=args.expect, probes=probes, labels=labels, remote=checks
    )
    sys.stdout.write(result.output)
    return result.code


def _timed_scan(ports: list[Port]) -> Snapshot | str:
    """A timed scan of this machine's `ports` (none: an empty snapshot), or why it failed."""
    if not ports:
        return Snapshot(())
    scanner = _scanner()
    try:
        return timed_scan(scanner, ports)
    except ScanError as exc:
        return f"could not scan: {exc}"
    finally:
        scanner.close()


def _remote_checks(
    targets: list[RemoteTarget], settings: cfg.Config, probe: bool
) -> list[RemoteCheck]:
    """One check of each entry on another machine: with its health, or only a connect."""
    check = check_remote if probe else _connect_only
    return [check(target, _remote_settings(target, settings)) for target in targets]


def _wants_nagios(argv: Sequence[str]) -> bool:
    """`check --nagios` answers bad input as a plugin must: UNKNOWN on stdout, exit 3. Looked
    for in the raw arguments, because argparse may reject them before --nagios is parsed."""
    if not argv or argv[0] != "check":
        return False
    options = list(argv[1:])
    if "--" in options:
        options = options[: options.index("--")]
    return any(len(arg) >= 4 and "--nagios".startswith(arg) for arg in options)


def cmd_metrics(args: argparse.Namespace) -> int:
    folder = _textfile_folder(args.textfile) if args.textfile is not None else None
    settings = _saved_settings()
    local, targets = _split(args.specs)
    if args.specs:
        ports = _ports(local) if local else []
    else:  # the settings' ports and their entries on other machines
        targets = [entry.target for entry in settings.remotes]
        ports = _configured_ports([], settings) if settings.ports or not targets else []
    snapshot = _timed_scan(ports)
    if isinstance(snapshot, str):
        print(f"portwatch metrics: {snapshot}", file=sys.stderr)
        return EXIT_SCAN_FAILED
    remote = _remote_checks(targets, settings, args.probe)
    labels = _labels(ports + [port_of(target) for target in targets], settings)
    probes = _probe_all(snapshot, settings) if args.probe else {}
    text = metrics.render(snapshot, labels=labels, probes=probes, remote=remote)
    if folder is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        textfile.write(folder, text)
    except OSError as exc:
        print(
            f"portwatch metrics: could not write {folder / textfile.FILE_NAME}: {exc}",
            file=sys.stderr,
        )
        return EXIT_SCAN_FAILED
    return EXIT_OK


def cmd_prometheus_config(args: argparse.Namespace) -> int:
    settings = _saved_settings()
    ports = _configured_ports(args.specs, settings)
    try:
        hosts = [promconf.host_text(host) for host in args.host or [socket.gethostname()]]
        exporter = promconf.exporter_text(args.exporter)
        key_file = promconf.key_file_text(args.api_key_file) if args.api_key_file else None
    except promconf.ConfigInputError as exc:
        raise UsageError(str(exc)) from None
    labels = _labels(ports, settings)
    targets = [
        promconf.Target(port, labels[port], promconf.is_bluesky(port, labels[port]))
        for port in ports
    ]
    parts = []
    if args.only != "scrape":
        parts.append(promconf.blackbox_modules(targets, key_file))
    if args.only != "blackbox":
        parts.append(promconf.scrape_jobs(targets, hosts, exporter))
    sys.stdout.write("\n".join(parts))
    keyed = [
        str(t.port) for t in targets if t.bluesky and (e := settings.watched(t.port)) and e.api_key
    ]
    if keyed and key_file is None and args.only != "scrape":
        print(
            f"note: {', '.join(keyed)} has an API key in Settings; give "
            "--api-key-file PATH (a file on the Prometheus server holding it) to send it",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    try:
        port = parse_port(args.port)
    except PortSpecError as exc:
        raise UsageError(str(exc)) from None
    info = explain_on(host_facts(), port.number, port.protocol)
    findings = []
    if args.now:
        scanner = _scanner()
        try:
            state = scanner.scan([port], connections=True).states[0]
            findings = diagnose(state, info)
        except ScanError as exc:
            print(f"portwatch explain: could not scan: {exc}", file=sys.stderr)
        finally:
            scanner.close()
    if args.json:
        data = {"port": port.number, **report.range_json(info)}
        if args.now:
            data["diagnosis"] = [finding.to_json() for finding in findings]
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(explanation_text(info))
    if findings:
        print("\nRight now:")
        for finding in findings:
            print(f"  {finding.title}. {finding.detail}")
            for command in finding.commands:
                print(f"    $ {command}")
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    """Ports of this machine (polled every --interval) and entries on other machines (each on
    its own schedule), in one watch: one print order, one events log, one textfile."""
    local, targets = _split(args.specs)
    ports = _ports(local) if local else []
    folder = _textfile_folder(args.textfile) if args.textfile is not None else None
    if folder is not None and ports and args.interval > args.refresh:
        raise UsageError(
            f"--interval {args.interval:g} is longer than the textfile refresh "
            f"({args.refresh:g} s): use an interval of at most {args.refresh:g} s"
        )
    settings = _saved_settings()
    history = HistoryWriter(EventLog(paths.events_file())) if args.log else None
    printing = threading.Lock()
    export = None
    if folder is not None:
        labels = _labels(ports, settings)
        labels.update({port_of(t): _remote_label(t, settings) for t in targets})
        export = textfile.WatchExport(folder, labels, refresh=args.refresh)
    stop = threading.Event()
    # SIGTERM (kill, systemd stop) ends the watch like Ctrl+C: with "watch-ended" in the log.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    remote = _watch_remote(args, targets, settings, history, export, printing) if targets else None
    try:
        if ports:
            _watch_local(args, ports, settings, history, export, printing, stop)
        else:
            # Only other machines: their threads do the work; this one keeps the textfile fresh.
            while not stop.wait(args.refresh / 2 if export is not None else None):
                error = export.tick() if export is not None else None
                if error:
                    with printing:
                        print(f"portwatch watch: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        if remote is not None:
            ended = remote.close("quit")
            if history is not None:
                history.write(ended)
    return EXIT_OK


def _watch_local(
    args: argparse.Namespace,
    ports: list[Port],
    settings: cfg.Config,
    history: HistoryWriter | None,
    export: textfile.WatchExport | None,
    printing: threading.Lock,
    stop: threading.Event,
) -> None:
    watcher = Watcher(_scanner(), ports, log=history, watcher_id=f"watch-{os.getpid()}")
    reported: list[str | None] = [None]
    history_problem: list[str | None] = [None]

    def on_poll(snapshot: Snapshot | None, events: list[Event]) -> None:
        if export is not None:
            error = export.update(watcher.last, events)
            if error:
                print(f"portwatch watch: {error}", file=sys.stderr)
        if snapshot is not None and reported[0] is None and not args.json:
            for state in snapshot.states:
                print(
                    f"{report.local_time(snapshot.time)}  {state.port}  now {report.summary(state)}"
                )
            reported[0] = ""
        if watcher.last_error != reported[0]:
            reported[0] = watcher.last_error or ""
            if watcher.last_error:
                print(f"portwatch watch: {watcher.last_error}", file=sys.stderr)
        if watcher.history_problem != history_problem[0]:
            history_problem[0] = watcher.history_problem
            if watcher.history_problem:
                print(
                    f"portwatch watch: cannot write the events log ({watcher.history_problem});"
                    " changes are kept until it can",
                    file=sys.stderr,
                )
        for event in events:
            print(json.dumps(event.to_json()) if args.json else report.event_text(event))
        sys.stdout.flush()

    def on_poll_and_check(snapshot: Snapshot | None, events: list[Event]) -> None:
        with printing:
            on_poll(snapshot, events)
        if snapshot is not None and monitor is not None:
            monitor.update(snapshot.states)

    def on_outcome(port: Port, _state: PortState, outcome: CheckOutcome) -> None:
        lines = []
        if outcome.previous_health is None and outcome.health_news is None:
            result = outcome.result
            verdict = "no health check" if result.verdict == "unchecked" else result.verdict
            lines.append(
                f"{report.local_time(result.time)}  {port}  health: {verdict}: {result.summary}"
            )
        for event in outcome_events(port, outcome):
            lines.append(json.dumps(event.to_json()) if args.json else report.event_text(event))
        if args.json:
            lines = [line for line in lines if line.startswith("{")]
        error = export.health(port, outcome.result) if export is not None else None
        with printing:
            for line in lines:
                print(line)
            if error:
                print(f"portwatch watch: {error}", file=sys.stderr)
            sys.stdout.flush()

    monitor = _health_monitor(args, history, settings=settings, on_outcome=on_outcome)
    try:
        watcher.run(args.interval, on_poll_and_check, stop)
    finally:
        if monitor is not None:
            monitor.close()
        watcher.close("quit")
        watcher.scanner.close()


def _watch_remote(
    args: argparse.Namespace,
    targets: list[RemoteTarget],
    settings: cfg.Config,
    history: HistoryWriter | None,
    export: textfile.WatchExport | None,
    printing: threading.Lock,
) -> RemoteMonitor:
    """Start watching entries on other machines: each on its own schedule (--health-interval,
    else the entry's interval in Settings, else 10 s), on the monitor's threads."""
    seen: set[RemoteTarget] = set()

    def on_check(check: RemoteCheck, events: list[Event]) -> None:
        lines = []
        # The watch records go to the log only, as a local watch's do.
        shown = [event for event in events if event.kind not in WATCH_KINDS]
        if check.target not in seen and not args.json:
            lines.append(f"{report.local_time(check.time)}  now {check.line}")
            # The first line already says that it listens.
            shown = [event for event in shown if event.kind != "started"]
        seen.add(check.target)
        for event in shown:
            lines.append(json.dumps(event.to_json()) if args.json else report.event_text(event))
        if history is not None and events:
            history.write(events)
        error = export.remote_checked(port_of(check.target), check, events) if export else None
        with printing:
            for line in lines:
                print(line)
            if error:
                print(f"portwatch watch: {error}", file=sys.stderr)
            sys.stdout.flush()

    given = args.health_interval  # NOT_GIVEN, a number, or None: "off"
    probe = args.probe and given is not None
    entries = []
    for target in targets:
        entry = settings.remote(target)
        # Only an interval given on this command line overrides the entry's own.
        interval = given if isinstance(given, float) else (entry.interval if entry else None)
        entries.append(
            RemoteEntry(
                target,
                interval or cfg.DEFAULT_REMOTE_INTERVAL,
                _remote_settings(target, settings),
            )
        )
    return RemoteMonitor(
        entries,
        on_check,
        check=check_remote if probe else _connect_only,
        watcher=f"watch-{os.getpid()}",
    )


def _connect_only(target: RemoteTarget, _settings: RemoteSettings) -> RemoteCheck:
    """--no-probe, --health-interval off: whether it listens, not how healthy it is."""
    reached = reach(target)
    return RemoteCheck(target, reached, None, seconds=reached.seconds)


def _health_monitor(
    args: argparse.Namespace,
    history: HistoryWriter | None,
    settings: cfg.Config,
    on_outcome: Callable[[Port, PortState, CheckOutcome], None] | None = None,
) -> HealthMonitor | None:
    interval = _given(args, "health_interval", cfg.DEFAULT_HEALTH_INTERVAL)
    if not isinstance(interval, float) or not args.probe or on_outcome is None:
        return None

    def key_for(port: Port) -> KeyChoice:
        entry = settings.watched(port)
        return choose_key(entry.api_key if entry else None)

    return HealthMonitor(
        on_outcome,
        interval_for=lambda _port: interval,
        key_for=key_for,
        history=history,
    )


def cmd_wait(args: argparse.Namespace) -> int:
    local, targets = _split(args.specs)
    if targets:
        return _wait_remote(args, local, targets)
    ports = _ports(args.specs)
    scanner = _scanner()
    deadline = time.monotonic() + args.timeout
    settings = _saved_settings() if args.healthy else None
    memories: dict[Port, ServiceMemory] = {}
    last_check = 0.0
    try:
        while True:
            try:
                states = scanner.scan(ports).states
                if all(s.listening for s in states):
                    if settings is None:
                        return EXIT_OK
                    # Health checks are HTTP requests: at most one round a second.
                    if time.monotonic() - last_check >= HEALTH_WAIT_S:
                        last_check = time.monotonic()
                        if all(_healthy(state, settings, memories) for state in states):
                            return EXIT_OK
            except ScanError:
                pass  # a failed scan proves nothing either way: try again
            left = deadline - time.monotonic()
            if left <= 0:
                return EXIT_FREE
            time.sleep(min(args.interval, left))
    except KeyboardInterrupt:
        return EXIT_FREE
    finally:
        scanner.close()


HEALTH_WAIT_S = 1.0


def _wait_remote(args: argparse.Namespace, local: list[str], targets: list[RemoteTarget]) -> int:
    """wait for entries on other machines (and local ports): each round connects (and, with
    --healthy, checks health) at most once a second; what still fails is said at the end."""
    ports = _ports(local) if local else []
    settings = _saved_settings()
    scanner = _scanner() if ports else None
    deadline = time.monotonic() + args.timeout
    memories: dict[Port, ServiceMemory] = {}
    pending: dict[RemoteTarget, str] = {}
    try:
        while True:
            started = time.monotonic()
            local_ok = True
            if scanner is not None:
                try:
                    states = scanner.scan(ports).states
                    local_ok = all(s.listening for s in states) and (
                        not args.healthy or all(_healthy(s, settings, memories) for s in states)
                    )
                except ScanError:
                    local_ok = False
            for target in list(pending) or targets:
                check = (check_remote if args.healthy else _connect_only)(
                    target, _remote_settings(target, settings)
                )
                if check.up and (not args.healthy or check.verdict != "unhealthy"):
                    pending.pop(target, None)
                else:
                    pending[target] = check.line
            if local_ok and not pending:
                return EXIT_OK
            left = deadline - time.monotonic()
            if left <= 0:
                for line in pending.values():
                    print(f"portwatch wait: {line}", file=sys.stderr)
                return EXIT_FREE
            time.sleep(min(max(args.interval, HEALTH_WAIT_S - (time.monotonic() - started)), left))
    except KeyboardInterrupt:
        return EXIT_FREE
    finally:
        if scanner is not None:
            scanner.close()


def _healthy(state: PortState, settings: cfg.Config, memories: dict[Port, ServiceMemory]) -> bool:
    """Healthy, or nothing to check (UDP, a service that is not HTTP): listening is all."""
    if state.port.protocol != "tcp":
        return True
    entry = settings.watched(state.port)
    memory = memories.setdefault(state.port, ServiceMemory())
    outcome = run_check(state, memory, choose_key(entry.api_key if entry else None))
    return outcome.result.verdict != "unhealthy"


def cmd_history(args: argparse.Namespace) -> int:
    ports = None
    if args.specs:
        local, targets = _split(args.specs)
        ports = (_ports(local) if local else []) + [port_of(t) for t in targets]
    now = time.time()
    # Read everything: a period that began before --since still covers the time after it.
    events_file = paths.events_file()
    result = EventLog(events_file).read(ports=ports)
    # A watcher killed without a word watched until its mark says, not until now.
    spans = timeline.periods(result.events, alive.dead_watchers(events_file, now))
    since = args.since
    if since is not None:
        spans = {
            port: [s for s in port_spans if s.end is None or s.end >= since]
            for port, port_spans in spans.items()
        }
        spans = {port: port_spans for port, port_spans in spans.items() if port_spans}
    if result.skipped:
        print(f"note: {result.skipped} damaged lines in the log were skipped", file=sys.stderr)
    if args.json or args.csv:
        table = timeline.rows(spans, now)
        print(timeline.to_json(table) if args.json else timeline.to_csv(table), end="")
        if args.json:
            print()
        return EXIT_OK
    if not spans:
        print("No changes recorded" + (" for these ports." if ports else "."))
        return EXIT_OK
    if args.timeline:
        return _print_timeline(spans, since if since is not None else now - timeline.DAY, now)
    for port, port_spans in spans.items():
        day = timeline.totals(port_spans, now - timeline.DAY, now)
        week = timeline.totals(port_spans, now - timeline.WEEK, now)
        print(f"{port}: last day {timeline.totals_text(day)}")
        print(f"  last week {timeline.totals_text(week)}")
        for span in port_spans:
            ongoing = " (ongoing)" if span.end is None else ""
            print(
                f"  {report.local_time(span.start)}  {port}  {timeline.STATE_WORDS[span.state]}"
                f"{report.period_owner_text(span.pid, span.name, span.username)}"
                f" for {timeline.duration_text(span.duration(now))}{ongoing}"
            )
        ended = timeline.unwatched_since(port_spans)
        if ended is not None:
            print(f"  {report.local_time(ended)}  {port}  not watched since")
    return EXIT_OK


def _print_timeline(spans: dict[Port, list[timeline.Period]], since: float, now: float) -> int:
    width = max(20, min(120, shutil.get_terminal_size((100, 24)).columns - 14))
    encoding = sys.stdout.encoding or "ascii"
    try:
        "".join(timeline.STRIP_CHARS.values()).encode(encoding)
        ascii_only = False
    except (UnicodeEncodeError, LookupError):
        ascii_only = True
    chars = timeline.ASCII_STRIP_CHARS if ascii_only else timeline.STRIP_CHARS
    label_width = max(len(str(port)) for port in spans)
    span = timeline.duration_text(now - since)
    print(f"{'':{label_width}}  {report.local_time(since)} ... now ({span})")
    for port, port_spans in spans.items():
        strip = timeline.strip_text(timeline.cells(port_spans, since, now, width), ascii_only)
        ratio = timeline.totals(port_spans, since, now).uptime_ratio
        share = f"{ratio:6.1%} up" if ratio is not None else "  not watched"
        print(f"{port!s:{label_width}}  {strip}  {share}")
    legend = ", ".join(f"{chars[state]} {timeline.STATE_WORDS[state]}" for state in timeline.STATES)
    print(f"{'':{label_width}}  {legend}; up = share of the watched time")
    return EXIT_OK


def _no_display() -> str | None:
    """Why the tray app cannot show anything here, or None. Qt would abort the process with a
    platform-plugin error instead of saying it."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "no graphical session here (neither DISPLAY nor WAYLAND_DISPLAY is set): the tray app "
        "needs a desktop; in a terminal use 'portwatch watch PORT' or 'portwatch check PORT'"
    )


def cmd_tray(args: argparse.Namespace) -> int:
    if args.quit:  # needs no display: it only talks to the running app's private channel
        from trayapp.ui.instance import ask_to_quit

        if ask_to_quit():
            return EXIT_OK
        print("portwatch: no Port Watch tray app is running", file=sys.stderr)
        return EXIT_FREE
    ports = _ports(args.specs) if args.specs else []
    reason = _no_display()
    if reason:
        print(f"portwatch: {reason}", file=sys.stderr)
        return EXIT_USAGE
    from trayapp.ui.app import run  # Qt is imported only here

    return run(extra_ports=ports, debug=args.debug)


COMMANDS = {
    "check": cmd_check,
    "explain": cmd_explain,
    "watch": cmd_watch,
    "wait": cmd_wait,
    "history": cmd_history,
    "metrics": cmd_metrics,
    "prometheus-config": cmd_prometheus_config,
    "tray": cmd_tray,
}


def tray_main() -> int:
    """`portwatch-tray` (the GUI entry point): the tray app, with the same options."""
    return main(["tray", *sys.argv[1:]])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
            argv = ["tray", *argv]  # `portwatch`, `portwatch --debug`, `portwatch 8080`
        args = parser.parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        if _wants_nagios(argv):
            result = nagios.unknown(f"portwatch check: {one_line(str(exc))}")
            sys.stdout.write(result.output)
            return result.code
        command = f" {args.command}" if "args" in locals() and args.command else ""
        print(f"portwatch{command}: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `portwatch check ... | head` closed the pipe: not an error worth a traceback.
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        # A second Ctrl+C while a watch ends (the first one is its normal end).
        return 130
    except Exception as exc:
        if not _wants_nagios(argv):
            raise
        # A plugin that dies with a traceback reads as CRITICAL to some engines: say UNKNOWN.
        result = nagios.unknown(f"portwatch check failed: {type(exc).__name__}: {exc}")
        sys.stdout.write(result.output)
        return result.code
