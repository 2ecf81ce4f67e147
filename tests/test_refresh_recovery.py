"""A refresh whose save or commit fails after the provider answered: the answer (perhaps a
rotated refresh token) is saved in a second transaction, never forgotten. And the session
stays alive through the provider call under a short idle_in_transaction_session_timeout.

PostgreSQL with committed transactions: the failures are real rollbacks and real dropped
connections, which a plain TestCase's wrapping transaction would hide.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import responses
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from frameio_oauth import services, signals
from frameio_oauth.models import OAuthToken
from tests.support.frameio import NEW, TOKEN_URL
from tests.support.pg_sessions import end_session, own_pid, token_row_lock
from tests.support.save_failures import (
    TABLE,
    OffsetClock,
    failing_commit,
    failing_saves,
    meanwhile,
)
from tests.support.signals import Received
from tests.support.tokens import stored

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def rotating(provider_http: responses.RequestsMock) -> responses.RequestsMock:
    provider_http.post(TOKEN_URL, json=NEW)
    return provider_http


@pytest.fixture
def refreshed() -> Iterator[list[dict[str, Any]]]:
    """Every token_refreshed sent during the test."""
    with Received(signals.token_refreshed) as got:
        yield got.calls


@pytest.fixture
def offset_clock(monkeypatch: pytest.MonkeyPatch) -> OffsetClock:
    clock = OffsetClock(time.monotonic)
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    return clock


def test_a_rotated_token_is_saved_when_the_first_save_fails(
    due_token: OAuthToken, rotating: responses.RequestsMock, refreshed: list[dict[str, Any]]
) -> None:
    with failing_saves(1):
        assert services.refresh(due_token.pk).refresh_token == "RT-new"
    row = stored(due_token)
    assert (row.access_token, row.refresh_token) == ("AT-new", "RT-new")
    assert (row.failure_count, row.last_error) == (0, "")
    assert len(rotating.calls) == 1
    assert [call["rotated"] for call in refreshed] == [True]


def test_a_rotated_token_is_saved_when_the_commit_fails(
    due_token: OAuthToken, rotating: responses.RequestsMock, refreshed: list[dict[str, Any]]
) -> None:
    with failing_commit(after_committing=False):
        services.refresh(due_token.pk)
    assert stored(due_token).refresh_token == "RT-new"
    assert len(refreshed) == 1


def test_a_commit_that_landed_although_it_reported_failure_is_not_written_twice(
    due_token: OAuthToken, rotating: responses.RequestsMock, refreshed: list[dict[str, Any]]
) -> None:
    with failing_commit(after_committing=True), CaptureQueriesContext(connection) as queries:
        services.refresh(due_token.pk)
    assert stored(due_token).refresh_token == "RT-new"
    assert len([q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]) == 1
    assert len(refreshed) == 1


def test_a_connection_dropped_before_the_commit_is_replaced_and_the_token_saved(
    due_token: OAuthToken, rotating: responses.RequestsMock
) -> None:
    pid = own_pid()
    with failing_commit(after_committing=False, before=lambda: end_session(pid)):
        services.refresh(due_token.pk)
    assert own_pid() != pid
    assert stored(due_token).refresh_token == "RT-new"


def test_the_sweep_saves_a_rotated_token_whose_first_save_failed(
    due_token: OAuthToken, rotating: responses.RequestsMock
) -> None:
    with failing_saves(1):
        assert services.refresh_due().refreshed == 1
    assert stored(due_token).refresh_token == "RT-new"


def test_a_row_changed_since_the_failure_is_left_alone_and_the_error_raised(
    due_token: OAuthToken, rotating: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    disconnected = f"UPDATE {TABLE} SET status = %s WHERE id = %s"
    with (
        meanwhile(disconnected, [OAuthToken.Status.REVOKED.value, due_token.pk]),
        failing_saves(1),
        pytest.raises(OperationalError),
    ):
        services.refresh(due_token.pk)
    row = stored(due_token)
    assert (row.status, row.refresh_token) == (OAuthToken.Status.REVOKED, due_token.refresh_token)
    assert any("changed" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_when_no_try_can_save_it_the_lost_rotation_is_logged_and_the_error_raised(
    due_token: OAuthToken,
    rotating: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    offset_clock: OffsetClock,
) -> None:
    started, started_on_the_wall = time.monotonic(), time.perf_counter()
    with failing_saves(None), pytest.raises(OperationalError):
        services.refresh(due_token.pk)
    # It tried again, with pauses, and gave up within its budget.
    assert len(offset_clock.pauses) > 1
    assert time.monotonic() - started < services.RECOVERY_BUDGET
    assert time.perf_counter() - started_on_the_wall < 3
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "rotated refresh token" in error.getMessage()
    assert "RT-new" not in caplog.text
    row = stored(due_token)
    assert (row.refresh_token, row.status) == (due_token.refresh_token, OAuthToken.Status.ACTIVE)


# --- idle_in_transaction_session_timeout ------------------------------------------------------


@pytest.fixture
def fresh_session() -> Iterator[None]:
    """A new connection for the test (its settings are read once per connection), closed
    afterwards so no session setting outlives it."""
    connection.close()
    yield
    connection.close()


@pytest.mark.usefixtures("fresh_session")
@pytest.mark.parametrize("caller", ["on-demand", "sweep"])
def test_a_short_idle_session_limit_does_not_release_the_row_during_the_provider_call(
    due_token: OAuthToken, provider_http: responses.RequestsMock, caller: str
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET idle_in_transaction_session_timeout = 300")
    seen: list[str] = []

    def slow_answer(request: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(0.8)  # well past the session's 300 ms
        seen.append(token_row_lock(due_token.pk))
        return 200, {}, '{"access_token": "AT-new", "refresh_token": "RT-new", "expires_in": 60}'

    provider_http.add_callback(responses.POST, TOKEN_URL, callback=slow_answer)
    if caller == "sweep":
        services.refresh_due()
    else:
        services.refresh(due_token.pk)
    assert seen == ["locked"]
    assert stored(due_token).refresh_token == "RT-new"


@pytest.mark.usefixtures("fresh_session")
def test_a_refresh_on_a_warm_connection_sends_only_the_lock_the_update_and_the_commit(
    user: Any, other_user: Any, make_token: Any, rotating: responses.RequestsMock
) -> None:
    first, second = make_token(user), make_token(other_user)
    services.refresh(first.pk, force=True)  # reads the session's limits once
    with CaptureQueriesContext(connection) as queries:
        services.refresh(second.pk, force=True)
    sent = [q["sql"] for q in queries.captured_queries if q["sql"] != "BEGIN"]
    assert [sql.split()[0] for sql in sent] == ["SELECT", "UPDATE", "COMMIT"]
    assert sent[0].endswith("FOR UPDATE NOWAIT")


def test_the_idle_limit_guard_costs_no_statement_of_its_own(
    fresh_session: None, due_token: OAuthToken, rotating: responses.RequestsMock
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET idle_in_transaction_session_timeout = 1000")
    with CaptureQueriesContext(connection) as queries:
        services.refresh(due_token.pk, force=True)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert statements == ["BEGIN", "SELECT", "UPDATE", "COMMIT"]


def test_a_long_enough_idle_limit_is_left_as_it_is(
    fresh_session: None, due_token: OAuthToken, rotating: responses.RequestsMock
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET idle_in_transaction_session_timeout = '10min'")
    with CaptureQueriesContext(connection) as queries:
        services.refresh(due_token.pk, force=True)
    assert not any(q["sql"].startswith("SET") for q in queries.captured_queries)


@pytest.mark.usefixtures("fresh_session")
def test_a_waiting_caller_bounds_its_lock_wait_in_one_statement(
    due_token: OAuthToken, rotating: responses.RequestsMock
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET idle_in_transaction_session_timeout = 1000")
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                OAuthToken.objects.select_for_update().get(pk=due_token.pk)
                held.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    # Released well after the caller has begun to wait, even on a busy machine.
    threading.Timer(1.0, release.set).start()
    try:
        with CaptureQueriesContext(connection) as queries:
            services.refresh(due_token.pk)
    finally:
        release.set()
        thread.join(10)
    limits = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SET")]
    # The idle limit is raised by the locking SELECT itself, not by a SET of its own.
    assert limits == ["SET LOCAL lock_timeout = 7000"]


def test_a_soft_time_limit_in_the_save_still_stores_the_rotated_refresh_token(
    due_token: OAuthToken, rotating: responses.RequestsMock
) -> None:
    with failing_saves(1, failure=SoftTimeLimitExceeded), pytest.raises(SoftTimeLimitExceeded):
        services.refresh(due_token.pk)
    assert stored(due_token).refresh_token == "RT-new"


def test_a_soft_time_limit_in_the_sweeps_save_still_stores_the_rotated_refresh_token(
    due_token: OAuthToken, rotating: responses.RequestsMock
) -> None:
    with failing_saves(1, failure=SoftTimeLimitExceeded), pytest.raises(SoftTimeLimitExceeded):
        services.refresh_due()
    assert stored(due_token).refresh_token == "RT-new"


def test_a_second_soft_time_limit_while_saving_again_does_not_lose_the_answer(
    due_token: OAuthToken, rotating: responses.RequestsMock, offset_clock: OffsetClock
) -> None:
    # Celery's soft time limit fires in the refresh's save and again in the first try after.
    with (
        failing_saves(2, failure=SoftTimeLimitExceeded),
        pytest.raises(SoftTimeLimitExceeded),
    ):
        services.refresh(due_token.pk)
    assert stored(due_token).refresh_token == "RT-new"


@pytest.mark.usefixtures("due_token")
def test_an_idle_limit_lowered_after_the_sessions_first_refresh_still_keeps_the_row_locked(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    connection.close()
    try:
        provider_http.post(TOKEN_URL, json={**NEW, "expires_in": 60})
        services.refresh(due_token.pk, force=True)
        # As ALTER SYSTEM and a reload would do to an open session.
        with connection.cursor() as cursor:
            cursor.execute("SET idle_in_transaction_session_timeout = 300")
        seen: list[str] = []

        def slow(request: Any) -> tuple[int, dict[str, str], str]:
            time.sleep(0.8)
            seen.append(token_row_lock(due_token.pk))
            return 200, {}, '{"access_token": "AT-2", "refresh_token": "RT-2", "expires_in": 60}'

        provider_http.remove(responses.POST, TOKEN_URL)
        provider_http.add_callback(responses.POST, TOKEN_URL, callback=slow)
        services.refresh(due_token.pk, force=True)
        assert seen == ["locked"]
    finally:
        connection.close()


def test_a_row_removed_since_the_failure_stays_removed_and_the_error_is_raised(
    due_token: OAuthToken, rotating: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    removed = f"DELETE FROM {TABLE} WHERE id = %s"
    with (
        meanwhile(removed, [due_token.pk]),
        failing_saves(1),
        pytest.raises(OperationalError),
    ):
        services.refresh(due_token.pk)
    assert not OAuthToken.objects.filter(pk=due_token.pk).exists()
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "the row was deleted meanwhile" in error.getMessage()


def test_an_unsaved_refresh_that_did_not_rotate_is_logged_as_such_and_the_error_raised(
    due_token: OAuthToken,
    provider_http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    offset_clock: OffsetClock,
) -> None:
    # The row's refresh token is still the current one: only the new access token is lost.
    provider_http.post(TOKEN_URL, json={"access_token": "AT-new", "expires_in": 3600})
    with failing_saves(None), pytest.raises(OperationalError):
        services.refresh(due_token.pk)
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "its refresh token did not change" in error.getMessage()
    assert "AT-new" not in caplog.text
    assert stored(due_token).access_token == due_token.access_token


def test_a_soft_time_limit_in_the_pause_between_tries_still_stores_the_rotated_refresh_token(
    due_token: OAuthToken, rotating: responses.RequestsMock
) -> None:
    with (
        failing_saves(2),  # the refresh's own save and the first try to save it again
        # Celery's soft time limit fires in the pause before the next try.
        mock.patch("time.sleep", side_effect=SoftTimeLimitExceeded),
        pytest.raises(SoftTimeLimitExceeded),
    ):
        services.refresh(due_token.pk)
    assert stored(due_token).refresh_token == "RT-new"


def test_a_connection_the_server_ends_after_the_rollback_is_replaced_and_the_token_saved(
    due_token: OAuthToken, rotating: responses.RequestsMock
) -> None:
    # Still open on Django's side but unusable: every try on it would fail.
    wrapper = connections["default"]
    real_rollback = wrapper.rollback
    pid = own_pid()
    ended: list[int] = []

    def rollback_then_server_gone() -> None:
        real_rollback()
        if not ended:
            end_session(pid)
            ended.append(pid)

    with failing_saves(1), mock.patch.object(wrapper, "rollback", rollback_then_server_gone):
        assert services.refresh(due_token.pk).refresh_token == "RT-new"
    assert own_pid() != pid
    assert stored(due_token).refresh_token == "RT-new"
