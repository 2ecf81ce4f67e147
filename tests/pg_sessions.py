"""Ending a PostgreSQL session from outside, as a server restart or a failover would."""

from __future__ import annotations

import time

import psycopg
from django.db import connection


def end_session(pid: int) -> None:
    """Terminate the backend ``pid`` and return once it is gone."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} did not end"
            time.sleep(0.02)


def own_pid() -> int:
    """The backend pid of this thread's default connection."""
    connection.ensure_connection()
    return int(connection.connection.info.backend_pid)
