"""Shared set-up for the benchmark scripts: Django on the ``frameio_bench`` database, the
machine description every script prints, and small statistics helpers.

Import this module first (``from _setup import ...``); it configures Django on import.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "benchmarks"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"

import django  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from benchmarks import settings as bench_settings  # noqa: E402


def _ensure_database() -> None:
    db = bench_settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))


# Worker processes started by a benchmark set this: their parent already created and migrated
# the database.
IS_CHILD = os.environ.get("FRAMEIO_BENCH_CHILD") == "1"
if not IS_CHILD:
    _ensure_database()
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

if not IS_CHILD:
    call_command("migrate", verbosity=0)


# --- What every script prints first ----------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(len(os.sched_getaffinity(0)))


def print_machine(title: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    db = bench_settings.DATABASES["default"]
    print(f"== {title} ==")
    print(f"nproc: {nproc()}")
    print(f"cpu: {cpu_model()}")
    print(f"python: {platform.python_version()} ({platform.python_implementation()})")
    print(f"django: {django.get_version()}")
    print(f"postgresql: {pg_version} at {db['HOST']}:{db['PORT']}, database {db['NAME']}")
    print(f"psycopg: {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()})")
    print()


# --- Numbers -------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def vm_rss_kib() -> int:
    """The current resident set size (not the peak) from /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --- Fixtures -------------------------------------------------------------------------------


def delete_users(**lookup: Any) -> None:
    """Delete benchmark users, their tokens first: deleting a user with a token revokes its
    grant at the provider (frameio_oauth.receivers), and these tokens were never granted."""
    from django.contrib.auth import get_user_model

    from frameio_oauth.models import OAuthToken

    users = get_user_model().objects.filter(**lookup)
    OAuthToken.objects.filter(user__in=users).delete()
    users.delete()


def make_tokens(
    prefix: str, count: int, *, expires_in: timedelta, next_refresh_in: timedelta
) -> list[Any]:
    """Create ``count`` users with one encrypted token each (real envelopes); return the tokens.

    Rows from an earlier run with the same prefix are deleted first, so reruns start clean.
    """
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from frameio_oauth.models import OAuthToken

    user_model = get_user_model()
    delete_users(username__startswith=f"{prefix}-")
    users = user_model.objects.bulk_create(
        [user_model(username=f"{prefix}-{i}", password="!") for i in range(count)]
    )
    now = timezone.now()
    tokens = [
        OAuthToken(
            user=user,
            provider="frameio",
            provider_user_id=f"{prefix}-fio-{user.pk}",
            provider_email=f"{prefix}-{user.pk}@frame.example",
            access_token=f"access-{user.pk}-" + "a" * 64,
            refresh_token=f"refresh-{user.pk}-" + "r" * 64,
            scope="account.read offline",
            expires_at=now + expires_in,
            next_refresh_at=now + next_refresh_in,
        )
        for user in users
    ]
    created = OAuthToken.objects.bulk_create(tokens)
    vacuum(OAuthToken._meta.db_table, user_model._meta.db_table)
    return created


def vacuum(*tables: str) -> None:
    """VACUUM (ANALYZE) the tables, as autovacuum would between a production sweep and the
    next. The scripts delete and create thousands of rows in seconds, and this machine's
    PostgreSQL runs with autovacuum off: without this, every due-row scan walks past the dead
    index entries of earlier runs."""
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(table)}")


# --- The local provider (a separate process, so its CPU is not ours) -----------------------


class LocalProvider:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.token_url = f"http://127.0.0.1:{port}/oauth2/token"


@contextmanager
def local_provider(delay: float) -> Iterator[LocalProvider]:
    """Run benchmarks/_provider.py on 127.0.0.1 (ephemeral port), answering after ``delay``."""
    process = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "_provider.py"), "--delay", str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        server = LocalProvider(process, announced_port(process))
        _wait_until_listening(server.port)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def announced_port(process: subprocess.Popen[str]) -> int:
    """The port a provider process prints (``port <n>``, _provider.serve) once it listens."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("port "):
        raise RuntimeError(f"the provider did not start: {line!r}")
    return int(line.split()[1])


def _wait_until_listening(port: int) -> None:
    import socket

    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def provider_settings(token_url: str) -> dict[str, Any]:
    """FRAMEIO_OAUTH with TOKEN_URL pointed at the local provider (for override_settings)."""
    return {**bench_settings.FRAMEIO_OAUTH, "TOKEN_URL": token_url}
