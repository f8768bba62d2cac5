"""Who can reach a listener: this machine only (loopback), or other machines too.

We see the address a socket is bound to, not the firewall: "reachable from other machines"
always comes with "unless a firewall blocks it", never more. For services that have no reason
to be reachable from elsewhere (the RE Manager's ZMQ sockets, Redis) a listener bound to more
than loopback is a warning, with the option that binds it to loopback.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from trayapp.core.model import Listener

Reach = Literal["loopback", "all-interfaces", "network"]

FIREWALL = "unless a firewall blocks it"


@dataclass(frozen=True)
class Exposure:
    reach: Reach
    text: str  # in words, for windows and the CLI
    warning: str | None = None  # this service should not be reachable from elsewhere
    fix: str | None = None  # the option or setting that binds it to loopback

    @property
    def remote(self) -> bool:
        return self.reach != "loopback"

    def to_json(self) -> dict[str, object]:
        return {
            "reach": self.reach,
            "remote": self.remote,
            "text": self.text,
            "warning": self.warning,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class _Private:
    """A service that needs no exposure, how to recognise it, and how to bind it to loopback."""

    what: str
    ports: tuple[int, ...]
    names: tuple[str, ...]  # full process names that identify it on any port
    fix: str


PRIVATE_SERVICES = (
    _Private(
        "the RE Manager's ZMQ control socket (anyone who reaches it can run plans)",
        (60615,),
        (),
        "start-re-manager --zmq-control-addr tcp://127.0.0.1:60615 "
        "(or QSERVER_ZMQ_CONTROL_ADDRESS_FOR_SERVER=tcp://127.0.0.1:60615)",
    ),
    _Private(
        "the RE Manager's ZMQ info socket (console output of the runs)",
        (60625,),
        (),
        "start-re-manager --zmq-info-addr tcp://127.0.0.1:60625 "
        "(or QSERVER_ZMQ_INFO_ADDRESS_FOR_SERVER=tcp://127.0.0.1:60625)",
    ),
    _Private(
        "Redis (the Queue Server's database; no password by default)",
        (6379,),
        ("redis-server",),
        "in redis.conf: bind 127.0.0.1 -::1 (or start it with redis-server --bind 127.0.0.1)",
    ),
)


def reach_of(address: str) -> Reach:
    host = address.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.split("%", 1)[0]  # an IPv6 zone ("fe80::1%eth0")
    if host in ("", "*"):
        return "all-interfaces"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "network"  # not an address we know: assume the worst
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "all-interfaces"
    return "network"


def exposure(listener: Listener, owner_name: str | None = None) -> Exposure:
    """How reachable this listener is, in words, and a warning where it should not be."""
    reach = reach_of(listener.address)
    if reach == "loopback":
        text = "only from this machine (loopback)"
    elif reach == "all-interfaces":
        text = f"from other machines: bound to all interfaces ({listener.address}), {FIREWALL}"
    else:
        text = f"from other machines on the network of {listener.address}, {FIREWALL}"
    if reach == "loopback":
        return Exposure(reach, text)
    service = _private_service(listener.port, owner_name)
    if service is None:
        return Exposure(reach, text)
    warning = f"{service.what} is reachable from other machines ({FIREWALL}); it need not be"
    return Exposure(reach, text, warning=warning, fix=f"bind it to loopback: {service.fix}")


def _private_service(port: int, owner_name: str | None) -> _Private | None:
    """By port (the owner may be hidden, or a python running the manager), or by the
    program's name on any port."""
    for service in PRIVATE_SERVICES:
        if port in service.ports:
            return service
    for service in PRIVATE_SERVICES:
        if owner_name is not None and owner_name in service.names:
            return service
    return None
