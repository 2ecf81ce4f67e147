"""Looking at PostgreSQL from a session of its own: whether a row is locked, or ending a
session from outside, as a server restart or a failover would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection

from frameio_oauth.models import OAuthToken


@contextmanager
def other_session(*, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection of its own to the test database, not Django's."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=autocommit,
    ) as other:
        yield other


def token_row_lock(pk: int) -> str:
    """ "locked" if another transaction holds the token row ``pk``, else "free"."""
    with other_session() as other:
        try:
            other.execute(
                f"SELECT 1 FROM {OAuthToken._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT",
                [pk],
            )
        except psycopg.errors.LockNotAvailable:
            return "locked"
        return "free"


def end_session(pid: int) -> None:
    """Terminate the backend ``pid`` and return once it is gone."""
    with other_session(autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} did not end"
            time.sleep(0.02)


def own_pid() -> int:
    """The backend pid of this thread's default connection."""
    connection.ensure_connection()
    return int(connection.connection.info.backend_pid)
