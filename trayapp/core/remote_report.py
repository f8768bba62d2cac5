"""What is said about a port on another machine: its state, health, range and the commands to
run over there. No owner and no ephemeral range: those belong to the other machine and are not
known here, so they are not shown as if they were."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from trayapp.core.apikey import KeyChoice, choose_key
from trayapp.core.ranges import explain_port
from trayapp.core.remote import RemoteCheck, RemoteSpecError, RemoteTarget, parse_remote

ENV_URI = "QSERVER_HTTP_SERVER_URI"
ELSEWHERE = "The process is on another machine; Port Watch cannot see it from here."


def suggested_target(environ: Mapping[str, str] | None = None) -> RemoteTarget | None:
    """The Bluesky server the clients on this machine use (QSERVER_HTTP_SERVER_URI), when it
    names another host: Settings offers it, nothing adds it by itself."""
    value = (os.environ if environ is None else environ).get(ENV_URI, "").strip()
    if not value:
        return None
    try:
        target = parse_remote(value)
    except RemoteSpecError:
        return None
    return None if target.loopback else target


def key_for(
    target: RemoteTarget, entry_key: str | None, environ: Mapping[str, str] | None = None
) -> KeyChoice:
    """The entry's own key; the Bluesky environment's key only for the server the environment
    names (QSERVER_HTTP_SERVER_URI), so it never goes to a host it was not meant for."""
    if entry_key:
        return KeyChoice.from_settings(entry_key)
    env = os.environ if environ is None else environ
    if suggested_target(env) == target:
        return choose_key(None, env)
    return KeyChoice()


def check_text(check: RemoteCheck, commands: Sequence[str], label: str = "") -> str:
    """`commands`: what to run on the other machine (the caller knows them: platforms)."""
    target = check.target
    head = f"{target.title}" + (f" ({label})" if label else "")
    lines = [head]
    if check.up:
        lines.append(f"  {check.reach.text}")
    else:
        lines.append(f"  down: {check.reach.text}")
    if check.result is not None:
        verdict = check.result.verdict
        lines.append(f"  health: {verdict}: {check.result.summary}")
    lines.append(f"  {ELSEWHERE} On it, run:")
    lines.extend(f"    {command}" for command in commands)
    info = explain_port(target.port, "tcp", ephemeral=None, os_name="other")
    lines.append(f"  Port {target.port}: {info.title}, ports {info.first}-{info.last}.")
    return "\n".join(lines)


def check_json(check: RemoteCheck, commands: Sequence[str], label: str = "") -> dict[str, Any]:
    data = check.to_json()
    info = explain_port(check.target.port, "tcp", ephemeral=None, os_name="other")
    data["label"] = label
    data["range"] = {
        "name": info.key,
        "title": info.title,
        "first": info.first,
        "last": info.last,
        "explanation": info.explanation,
    }
    data["listeners"] = None  # on another machine: not known here
    data["commands_there"] = list(commands)
    return data
