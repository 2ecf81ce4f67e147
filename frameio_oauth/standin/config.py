"""The stand-in's configuration, read once from its environment variables (docs/example.md).

Django-free: ``__main__`` reads it before Django starts, to report a bad value in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .modes import Mode

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
DEFAULT_USERS = "demo:demo:demo@example.com"
DEFAULT_REDIRECT_URIS = (
    "http://127.0.0.1:8000/frameio/callback/ http://localhost:8000/frameio/callback/"
)
# Fixed, not secret: this server only ever runs on loopback for demos and tests.
DEFAULT_SECRET_KEY = "standin-insecure-7f3c1d0e9b8a4c56a2e1f0d9c8b7a6e5"

_FALSE = frozenset({"", "0", "false", "no", "off"})


class ConfigurationError(ValueError):
    """An environment variable the stand-in cannot use; its message names the variable."""


@dataclass(frozen=True)
class SeedUser:
    username: str
    password: str
    email: str


@dataclass(frozen=True)
class StandinConfig:
    mode: Mode
    host: str
    port: int
    db_path: Path
    users: tuple[SeedUser, ...]
    redirect_uris: tuple[str, ...]
    access_token_seconds: int
    debug: bool
    log_level: str
    secret_key: str
    send_iss: bool

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> StandinConfig:
        mode = mode_from_environ(environ)
        return cls(
            mode=mode,
            host=environ.get("FRAMEIO_STANDIN_HOST") or DEFAULT_HOST,
            port=_port(environ.get("FRAMEIO_STANDIN_PORT") or str(DEFAULT_PORT)),
            db_path=Path(environ.get("FRAMEIO_STANDIN_DB") or default_db_path(environ)),
            users=parse_users(environ.get("FRAMEIO_STANDIN_USERS") or DEFAULT_USERS),
            redirect_uris=tuple(
                (environ.get("FRAMEIO_STANDIN_REDIRECT_URIS") or DEFAULT_REDIRECT_URIS).split()
            ),
            access_token_seconds=_seconds(
                environ, "FRAMEIO_STANDIN_ACCESS_TOKEN_SECONDS", mode.shape.access_token_seconds
            ),
            debug=_flag(environ, "FRAMEIO_STANDIN_DEBUG", True),
            log_level=(environ.get("FRAMEIO_STANDIN_LOG_LEVEL") or "INFO").upper(),
            secret_key=environ.get("FRAMEIO_STANDIN_SECRET_KEY") or DEFAULT_SECRET_KEY,
            send_iss=_flag(environ, "FRAMEIO_STANDIN_SEND_ISS", False),
        )


@cache
def current() -> StandinConfig:
    """This process's configuration (``__main__`` sets the environment before Django starts)."""
    return StandinConfig.from_environ(os.environ)


def mode_from_environ(environ: Mapping[str, str]) -> Mode:
    """FRAMEIO_STANDIN_LEGACY picks the legacy server; a client site reads it the same way."""
    return Mode.LEGACY if _flag(environ, "FRAMEIO_STANDIN_LEGACY", False) else Mode.IMS


def default_db_path(environ: Mapping[str, str]) -> Path:
    """A per-user data folder: writable, outside site-packages, and kept between runs."""
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "frameio-oauth" / "standin.sqlite3"


def parse_users(spec: str) -> tuple[SeedUser, ...]:
    users = []
    for raw_entry in spec.split(","):
        entry = raw_entry.strip()
        if not entry:
            continue
        # maxsplit keeps colons in the email part harmless; passwords may not contain ":".
        parts = entry.split(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise ConfigurationError(
                f"FRAMEIO_STANDIN_USERS entry {entry!r} is not username:password:email"
            )
        users.append(SeedUser(*parts))
    return tuple(users)


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in _FALSE


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise ConfigurationError(f"FRAMEIO_STANDIN_PORT must be a port number, not {value!r}")
    return int(value)


def _seconds(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) == 0:
        raise ConfigurationError(f"{name} must be a positive whole number, not {value!r}")
    return int(value)
