"""Which API key a Bluesky server gets, and where it came from.

The Bluesky tools' convention: a key given explicitly wins; otherwise the environment variable
QSERVER_HTTP_SERVER_API_KEY, then the file named by QSERVER_HTTP_SERVER_API_KEYFILE. Port Watch
follows it so that a beamline's existing setup works without typing the key again. The key
itself is never put into a message: messages name its origin only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_KEY = "QSERVER_HTTP_SERVER_API_KEY"
ENV_KEYFILE = "QSERVER_HTTP_SERVER_API_KEYFILE"
MAX_KEY_FILE = 4096  # a key is a few dozen characters; a bigger file is the wrong file
ALLOWED = "printable ASCII without spaces"


def sendable_key(key: str) -> bool:
    """The one rule for a key, in Settings, config.json, the environment and key files: what
    an HTTP header carries unchanged. Surrounding white space is trimmed before this."""
    return bool(key) and all(33 <= ord(ch) <= 126 for ch in key)


def clean_key(key: str) -> str | None:
    """The key to use for what was typed or pasted (a trailing newline is common), or None."""
    key = key.strip()
    return key if sendable_key(key) else None


@dataclass(frozen=True)
class KeyChoice:
    """The key to send (None: none), a human word for where it came from, and what is wrong
    with the configured source, if anything (then no key is sent)."""

    key: str | None = None
    origin: str = "none"
    problem: str | None = None

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"KeyChoice(origin={self.origin!r}, problem={self.problem!r})"

    @classmethod
    def from_settings(cls, key: str | None) -> KeyChoice:
        if key is None:
            return cls()
        cleaned = clean_key(key)
        if cleaned is None:
            return cls(
                origin="Settings",
                problem=f"the API key in Settings cannot be sent (use {ALLOWED})",
            )
        return cls(cleaned, "Settings")


def choose_key(settings_key: str | None, environ: Mapping[str, str] | None = None) -> KeyChoice:
    """Settings first, then the environment variable, then the key file."""
    if settings_key:
        return KeyChoice.from_settings(settings_key)
    env = os.environ if environ is None else environ
    value = env.get(ENV_KEY)
    if value:
        cleaned = clean_key(value)
        if cleaned is None:
            return KeyChoice(origin=ENV_KEY, problem=f"{ENV_KEY} is not {ALLOWED}")
        return KeyChoice(cleaned, ENV_KEY)
    name = env.get(ENV_KEYFILE)
    if name:
        return _from_file(Path(name))
    return KeyChoice()


def _from_file(path: Path) -> KeyChoice:
    origin = f"{ENV_KEYFILE} ({path})"

    def bad(why: str) -> KeyChoice:
        return KeyChoice(origin=origin, problem=f"the key file {path} {why}")

    try:
        if path.is_dir():
            return bad("is a folder")
        with path.open("rb") as handle:
            raw = handle.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        return bad("does not exist")
    except PermissionError:
        return bad("cannot be read (permission denied)")
    except OSError as exc:
        return bad(f"cannot be read ({exc.strerror or type(exc).__name__})")
    if len(raw) > MAX_KEY_FILE:
        return bad(f"is larger than {MAX_KEY_FILE} bytes")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return bad(f"does not hold text (use {ALLOWED})")
    if not text.strip():
        return bad("is empty")
    cleaned = clean_key(text)
    if cleaned is None:
        return bad(f"holds more than one key-like line or other characters (use {ALLOWED})")
    return KeyChoice(cleaned, origin)
