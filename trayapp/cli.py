"""`portwatch`: the command line over the core. Imports no Qt unless it starts the tray."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from trayapp import __version__
from trayapp.core import config as cfg
from trayapp.core import paths, report, timeline
from trayapp.core.diagnosis import diagnose
from trayapp.core.events import Event, parse_iso_time
from trayapp.core.history import EventLog
from trayapp.core.inspection import make_report
from trayapp.core.model import Port, Snapshot
from trayapp.core.ports import PortSpecError, parse_port, parse_ports
from trayapp.core.ranges import explain_port, explanation_text
from trayapp.core.scanning import ScanError, Scanner
from trayapp.core.services import label_for
from trayapp.core.watcher import Watcher

EXIT_OK, EXIT_FREE, EXIT_USAGE, EXIT_SCAN_FAILED = 0, 1, 2, 3
SPEC_HELP = "ports: 60610, 60610/tcp, 5353/udp, 8000-8010, lists separated by commas or spaces"


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
        help="don't look at the service's health (HTTP on loopback, 1 s at most per port)",
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

    wait = sub.add_parser("wait", help="exit 0 once every port listens, 1 on timeout")
    wait.add_argument("specs", nargs="+", metavar="SPEC", help=SPEC_HELP)
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


def cmd_check(args: argparse.Namespace) -> int:
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
    reports = []
    for state in snapshot.states:
        entry = settings.watched(state.port)
        label = entry.label if entry and entry.label else (label_for(*_key(state.port)) or "")
        reports.append(
            make_report(
                state, label=label, api_key=entry.api_key if entry else None, probe=args.probe
            )
        )
    if args.json:
        print(json.dumps([report.state_json(r) for r in reports], indent=2))
    else:
        print("\n\n".join(report.state_text(r) for r in reports))
        for problem in snapshot.problems:
            print(f"note: {problem}", file=sys.stderr)
    return EXIT_OK if all(s.listening for s in snapshot.states) else EXIT_FREE


def _key(port: Port) -> tuple[int, str]:
    return port.number, port.protocol


def cmd_explain(args: argparse.Namespace) -> int:
    try:
        port = parse_port(args.port)
    except PortSpecError as exc:
        raise UsageError(str(exc)) from None
    info = explain_port(port.number, port.protocol)
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
    ports = _ports(args.specs)
    log = EventLog(paths.events_file()) if args.log else None
    watcher = Watcher(_scanner(), ports, log=log)
    stop = threading.Event()
    reported: list[str | None] = [None]

    def on_poll(snapshot: Snapshot | None, events: list[Event]) -> None:
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
        for event in events:
            print(json.dumps(event.to_json()) if args.json else report.event_text(event))
        sys.stdout.flush()

    try:
        watcher.run(args.interval, on_poll, stop)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.scanner.close()
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    ports = _ports(args.specs)
    scanner = _scanner()
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            try:
                if all(s.listening for s in scanner.scan(ports).states):
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


def cmd_history(args: argparse.Namespace) -> int:
    ports = _ports(args.specs) if args.specs else None
    now = time.time()
    result = EventLog(paths.events_file()).read(since=args.since, ports=ports)
    spans = timeline.periods(result.events)
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
    for port, port_spans in spans.items():
        day = timeline.totals(port_spans, now - timeline.DAY, now)
        week = timeline.totals(port_spans, now - timeline.WEEK, now)
        print(
            f"{port}: last day up {timeline.duration_text(day.up)}, down "
            f"{timeline.duration_text(day.down)}; last week up "
            f"{timeline.duration_text(week.up)}, down {timeline.duration_text(week.down)}"
        )
        for span in port_spans:
            state = "up" if span.up else "down"
            ongoing = " (ongoing)" if span.end is None else ""
            print(
                f"  {report.event_text(span.event)}  -> {state} for "
                f"{timeline.duration_text(span.duration(now))}{ongoing}"
            )
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
    "tray": cmd_tray,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
            argv = ["tray", *argv]  # `portwatch`, `portwatch --debug`, `portwatch 8080`
        args = parser.parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        command = f" {args.command}" if "args" in locals() and args.command else ""
        print(f"portwatch{command}: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `portwatch check ... | head` closed the pipe: not an error worth a traceback.
        sys.stderr.close()
        return EXIT_OK
