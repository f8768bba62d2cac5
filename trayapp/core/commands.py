"""The commands a person would type on an OS to check a port themselves, port filled in.

Shown next to an answer so it can be checked by hand, or taken further than the app goes:
each command is copy-paste ready for the OS's usual shell (sh on Linux and macOS, Command
Prompt or PowerShell on Windows, as its description says). Pure data keyed by the OS's name,
which the caller passes in (platforms.current_os() for this machine).
"""

from __future__ import annotations

from trayapp.core.host import OSName

PID_PLACEHOLDER = "<pid>"


def _checked(port: int, protocol: str) -> str:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"not a port number: {port!r}")
    proto = protocol.lower()
    if proto not in ("tcp", "udp"):
        raise ValueError(f"protocol must be tcp or udp, not {protocol!r}")
    return proto


def _linux(port: int, proto: str, pid: int | None) -> list[tuple[str, str]]:
    # The filter is quoted because the shell would otherwise split "sport = :N" into words.
    if proto == "tcp":
        commands = [
            (
                "Listening TCP sockets on this port (process shown only for your own)",
                f"ss -tlnp 'sport = :{port}'",
            ),
            ("Process listening on this port, any user", f"sudo {_lsof(port, proto)}"),
            (
                "Every TCP socket with this local port, including TIME_WAIT leftovers",
                f"sudo ss -tanp 'sport = :{port}'",
            ),
        ]
    else:
        commands = [
            (
                "Bound UDP sockets on this port (process shown only for your own)",
                f"ss -ulnp 'sport = :{port}'",
            ),
            ("Process bound to this port, any user", f"sudo {_lsof(port, proto)}"),
            ("Every UDP socket with this local port", f"sudo ss -uanp 'sport = :{port}'"),
        ]
    return [*commands, *_ps(pid)]


def _lsof(port: int, proto: str) -> str:
    if proto == "tcp":
        return f"lsof -nP -iTCP:{port} -sTCP:LISTEN"
    return f"lsof -nP -iUDP:{port}"


def _macos(port: int, proto: str, pid: int | None) -> list[tuple[str, str]]:
    lsof = _lsof(port, proto)
    label = proto.upper()
    return [
        # Without root, lsof on macOS lists only your own processes' sockets.
        (f"Your processes on {label} port {port}", lsof),
        (f"Any user's process on {label} port {port}", f"sudo {lsof}"),
        # macOS netstat writes address.port, so the dot and the trailing space keep 80 from
        # also matching 8080 or 8000.
        (
            f"Every {label} socket using port {port}, local or remote, with its PID",
            f"netstat -anv -p {proto} | grep '\\.{port} '",
        ),
        *_ps(pid),
    ]


def _windows(port: int, proto: str, pid: int | None) -> list[tuple[str, str]]:
    label = proto.upper()
    # Anchored on the protocol column and the local address, so foreign port N and ports that
    # merely start with N (":80" in ":8080") do not match; no -p, because "-p tcp" hides IPv6.
    netstat = f'netstat -ano | findstr /R /C:"^ *{label}  *[^ ]*:{port} "'
    columns = "Select-Object LocalAddress,LocalPort,OwningProcess"
    if proto == "tcp":
        state = "Listening"
        powershell = f"Get-NetTCPConnection -LocalPort {port} -State Listen | {columns}"
    else:
        state = "Bound"
        powershell = f"Get-NetUDPEndpoint -LocalPort {port} | {columns}"
    shown_pid = str(pid) if pid is not None else PID_PLACEHOLDER
    return [
        (f"(Command Prompt) {label} sockets on local port {port}, PID in the last column", netstat),
        (f"(PowerShell) {state} on {label} port {port}, with the owning PID", powershell),
        ("(Command Prompt) The program behind that PID", f'tasklist /FI "PID eq {shown_pid}"'),
    ]


def _other(port: int, proto: str, pid: int | None) -> list[tuple[str, str]]:
    # lsof is the one tool most other Unix systems (the BSDs, illumos) share.
    lsof = _lsof(port, proto)
    return [
        (f"Your processes on {proto.upper()} port {port}", lsof),
        (f"Any user's process on {proto.upper()} port {port}", f"sudo {lsof}"),
        *_ps(pid),
    ]


def _ps(pid: int | None) -> list[tuple[str, str]]:
    if pid is None:
        return []
    return [("The process, its owner and full command line", f"ps -o pid,user,command -p {pid}")]


def check_commands(
    port: int, protocol: str, os_name: OSName, *, pid: int | None = None
) -> list[tuple[str, str]]:
    """(description, command) pairs for checking `port` by hand on `os_name`.

    With `pid` (when the app already knows the owner) a command to look at that process is
    filled in too; on Windows the tasklist line otherwise shows a `<pid>` placeholder.
    """
    proto = _checked(port, protocol)
    if os_name == "linux":
        return _linux(port, proto, pid)
    if os_name == "macos":
        return _macos(port, proto, pid)
    if os_name == "windows":
        return _windows(port, proto, pid)
    return _other(port, proto, pid)


def admin_hint(os_name: OSName) -> str:
    """How to get the rights to see other users' (and system services') processes."""
    if os_name == "windows":
        return (
            "To see processes of other users and services, run from an elevated prompt: "
            "right-click Command Prompt or PowerShell and choose Run as administrator."
        )
    return "To see processes of other users, run the command with sudo (as root)."


def terminate_hint(pid: int, os_name: OSName, *, force: bool = False) -> str:
    """The command that stops process `pid`; `force` for one that ignores the polite request.

    The polite form lets the program clean up (close its socket, remove lock files); the forced
    one (SIGKILL, taskkill /F) cannot be ignored but leaves any cleanup undone. On Windows the
    polite form only reaches programs with a window, so console servers usually need /F.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"not a process id: {pid!r}")
    if os_name == "windows":
        return f"taskkill /F /PID {pid}" if force else f"taskkill /PID {pid}"
    return f"kill -9 {pid}" if force else f"kill {pid}"


def commands_on_server(port: int, protocol: str = "tcp") -> list[str]:
    """What to run on another machine to see who holds its port: a Linux server, as beamline
    servers are (the commands say so when they need sudo)."""
    return [command for _title, command in check_commands(port, protocol, "linux")]
