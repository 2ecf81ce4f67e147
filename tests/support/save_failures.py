"""Saves and commits that fail after the provider answered, and a clock whose sleeps pass at
once: for the tests of the second save (tests/test_refresh_recovery.py) and its telemetry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from django.db import OperationalError, connection, connections

from frameio_oauth.models import OAuthToken
from tests.support.pg_sessions import other_session

TABLE = OAuthToken._meta.db_table
REFRESH_TOKEN_COLUMN = OAuthToken.ciphertext_column("refresh_token")


def stores_a_refresh_token(sql: str) -> bool:
    """Whether ``sql`` is the UPDATE that writes a refresh's answer (the refresh's own, or a
    second try at it)."""
    return sql.startswith("UPDATE") and REFRESH_TOKEN_COLUMN in sql


def dropped_connection() -> BaseException:
    return OperationalError("server closed the connection unexpectedly")


@contextmanager
def failing_saves(
    times: int | None, *, failure: Callable[[], BaseException] = dropped_connection
) -> Iterator[None]:
    """The UPDATE that stores a refresh's answer fails ``times`` times (None: always) before it
    reaches the server, with a dropped connection's error unless ``failure`` says otherwise."""
    left = [times]

    def wrapper(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if stores_a_refresh_token(sql) and (left[0] is None or left[0] > 0):
            if left[0] is not None:
                left[0] -= 1
            raise failure()
        return execute(sql, *args)

    with connection.execute_wrapper(wrapper):
        yield


@contextmanager
def meanwhile(statement: str, params: list[Any]) -> Iterator[None]:
    """Once a save of the refresh's answer has been tried, another session runs and commits
    ``statement`` just before the next locking SELECT: as a disconnect or a deletion that came
    between the failure and the second try would. Enter it before failing_saves, so that its
    wrapper sees the save that failing_saves' wrapper then fails."""
    tried = [False]

    def wrapper(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if stores_a_refresh_token(sql):
            tried[0] = True
        elif tried[0] and sql.startswith("SELECT") and " FOR UPDATE" in sql:
            tried[0] = False
            with other_session(autocommit=True) as other:
                other.execute(statement, params)
        return execute(sql, *args)

    with connection.execute_wrapper(wrapper):
        yield


class OffsetClock:
    """``time.monotonic`` and ``time.sleep`` for one test: a sleep returns at once and moves the
    clock on by its length, so the second save's pauses and budget pass without the wait."""

    def __init__(self, real: Callable[[], float]) -> None:
        self.real = real
        self.offset = 0.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.real() + self.offset

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.offset += seconds


def failing_commit(*, after_committing: bool, before: Callable[[], None] | None = None) -> Any:
    """Patch the first COMMIT to report a failure: having committed, or not."""
    wrapper = connections["default"]
    real = wrapper.commit
    calls = [0]

    def commit() -> None:
        calls[0] += 1
        if calls[0] > 1:
            return real()
        if before is not None:
            before()
            return real()
        if after_committing:
            real()
        raise OperationalError("server closed the connection unexpectedly")

    return mock.patch.object(wrapper, "commit", commit)
