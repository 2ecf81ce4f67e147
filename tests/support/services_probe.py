"""Which real services answer, decided once per test run.

In CI (``CI`` set) every service is required: tests that need one fail, never skip, when it is
missing. Elsewhere the suite falls back to SQLite and eager Celery and skips only the tests that
need the real service, saying so in the summary.
"""

from __future__ import annotations

import os
import shutil
import socket
from functools import cache
from pathlib import Path

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
PG_HOST = os.environ.get("FRAMEIO_TEST_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("FRAMEIO_TEST_PGPORT", "5432"))
REDIS_URL = os.environ.get("FRAMEIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@cache
def postgres_available() -> bool:
    if os.environ.get("FRAMEIO_TEST_DB") == "sqlite":
        return False
    # Probed in CI too: if it is down there, the suite runs on SQLite and every test that
    # needs PostgreSQL fails saying so, rather than 280 "connection refused" errors.
    return _answers(PG_HOST, PG_PORT)


@cache
def redis_available() -> bool:
    host_port = REDIS_URL.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    return _answers(host or "127.0.0.1", int(port or 6379))


@cache
def browser_paths() -> tuple[str, str] | None:
    """Where chromium and its chromedriver are, as the browser tests start them."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def browser_available() -> bool:
    return browser_paths() is not None


INTEROP_DIR = Path(__file__).resolve().parents[1] / "interop"


@cache
def oidc_provider_available() -> bool:
    """Node.js and the oidc-provider package (npm ci --prefix tests/interop)."""
    installed = INTEROP_DIR / "node_modules" / "oidc-provider" / "package.json"
    return shutil.which("node") is not None and installed.is_file()
