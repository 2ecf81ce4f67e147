from __future__ import annotations

import runpy
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import responses
import time_machine
from celery.contrib.testing.worker import start_worker
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.result import EagerResult
from celery.signals import task_prerun
from django.utils import timezone

from frameio_oauth import provider, services
from frameio_oauth.exceptions import ProviderUnavailable, ReauthorizationRequired
from frameio_oauth.models import OAuthToken
from frameio_oauth.services import LOCK_WAIT_SLACK, RECOVERY_BUDGET
from frameio_oauth.tasks import (
    refresh_due_tokens,
    refresh_token,
    refresh_token_if_due,
    retry_countdown,
)
from tests.support.celery_app import app
from tests.support.frameio import TOKEN_URL
from tests.support.services_probe import REDIS_URL, redis_available

ROOT = Path(__file__).resolve().parent.parent
NEW = {"access_token": "AT-new", "refresh_token": "RT-new", "expires_in": 3600}
SCHEDULE = {
    "frameio-oauth-refresh-due": {
        "task": "frameio_oauth.tasks.refresh_due_tokens",
        "schedule": 60.0,
    }
}


@pytest.fixture(scope="module", autouse=True)
def this_runs_queue_removed_from_redis_afterwards() -> Iterator[None]:
    """Each run has a queue of its own (tests/support/settings.py); without this, Redis would keep
    its binding keys after every run."""
    yield
    if not redis_available():
        return
    queue = app.conf.task_default_queue
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


@pytest.fixture
def due_token(user: Any, make_token: Any) -> OAuthToken:
    return make_token(
        user,
        expires_at=timezone.now() + timedelta(minutes=2),
        next_refresh_at=timezone.now() - timedelta(seconds=1),
    )


@pytest.mark.django_db
def test_the_sweep_task_returns_its_summary(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    summary = refresh_due_tokens.apply().get()
    assert summary == {"refreshed": 1, "skipped": 0, "failed": 0, "reauth": 0, "revoked": 0}


@pytest.mark.django_db
def test_a_fanned_out_sweep_enqueues_one_task_per_due_row(
    make_due_tokens: Any, provider_http: responses.RequestsMock
) -> None:
    make_due_tokens(3)
    provider_http.post(TOKEN_URL, json=NEW)
    assert refresh_due_tokens.apply(kwargs={"fanout": True}).get() == {"enqueued": 3, "revoked": 0}
    assert len(provider_http.calls) == 3
    assert not OAuthToken.objects.due().exists()


@pytest.mark.django_db
def test_a_fanned_out_sweeps_tasks_expire_after_one_beat_interval(
    make_due_tokens: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_due_tokens(2)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        refresh_token_if_due, "apply_async", lambda args, **options: sent.append(options)
    )
    refresh_due_tokens.apply(kwargs={"fanout": True}).get()
    refresh_due_tokens.apply(kwargs={"fanout": True, "expires": 300}).get()
    assert [options["expires"] for options in sent] == [60.0, 60.0, 300, 300]


@pytest.mark.django_db
@pytest.mark.parametrize("task", [refresh_token_if_due, refresh_token], ids=lambda task: task.name)
def test_a_per_token_task_says_whether_it_refreshed_and_skips_a_row_no_longer_due(
    due_token: OAuthToken, provider_http: responses.RequestsMock, task: Any
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    assert task.apply(args=[due_token.pk]).get() == "refreshed"
    # A second run for the same row (an overlapping beat tick) makes no provider call.
    assert task.apply(args=[due_token.pk]).get() == "not_due"
    assert len(provider_http.calls) == 1


@pytest.fixture
def failed_with_retry_after(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> ProviderUnavailable:
    """The token task's failure after a 503 whose Retry-After makes the row's backoff exactly
    120 s (the first failure's own is 15-30 s). Eager here, so raised rather than retried."""
    provider_http.post(TOKEN_URL, status=503, headers={"Retry-After": "120"})
    with pytest.raises(ProviderUnavailable) as caught:
        refresh_token.apply(args=[due_token.pk]).get()
    return caught.value


@pytest.mark.django_db
def test_the_token_tasks_retry_is_due_when_the_row_backs_off_until(
    due_token: OAuthToken,
    provider_http: responses.RequestsMock,
    failed_with_retry_after: ProviderUnavailable,
) -> None:
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert row.next_refresh_at is not None
    assert failed_with_retry_after.retry_at == row.next_refresh_at
    backoff = (row.next_refresh_at - timezone.now()).total_seconds()
    assert 119 <= backoff <= 120
    # The retry runs when the row is due again, not before (it would find it not due).
    assert abs(retry_countdown(failed_with_retry_after, 0) - backoff) < 1
    assert len(provider_http.calls) == 1


@pytest.mark.django_db
def test_the_token_tasks_retry_at_its_countdown_calls_the_provider_again(
    due_token: OAuthToken,
    provider_http: responses.RequestsMock,
    failed_with_retry_after: ProviderUnavailable,
) -> None:
    provider_http.replace(responses.POST, TOKEN_URL, json=NEW)
    countdown = retry_countdown(failed_with_retry_after, 0)
    with time_machine.travel(timezone.now() + timedelta(seconds=countdown + 0.01)):
        assert refresh_token.apply(args=[due_token.pk]).get() == "refreshed"
    assert len(provider_http.calls) == 2
    assert OAuthToken.objects.get(pk=due_token.pk).access_token == "AT-new"


def test_the_token_task_falls_back_to_exponential_backoff_when_no_row_recorded_the_failure() -> (
    None
):
    lock_wait_ran_out = ProviderUnavailable("waited too long for another worker's refresh")
    # Full jitter: a delay drawn from [0, 30 * 2**retries], capped at 30 min.
    assert 0 <= retry_countdown(lock_wait_ran_out, 0) <= 30
    assert 0 <= retry_countdown(lock_wait_ran_out, 3) <= 240
    assert 0 <= retry_countdown(lock_wait_ran_out, 20) <= 30 * 60


@pytest.mark.django_db
def test_a_worker_run_of_the_token_task_retries_at_the_rows_retry_time(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=503, headers={"Retry-After": "120"})
    published: list[dict[str, Any]] = []

    def publish(*args: Any, **options: Any) -> None:
        published.append(options)

    # As a worker runs it (not eagerly): the retry is published with its countdown.
    with mock.patch.object(refresh_token, "apply_async", publish):
        refresh_token.push_request(id="t1", retries=0, is_eager=False, called_directly=False)
        try:
            with pytest.raises(Retry) as caught:
                refresh_token.run(due_token.pk)
        finally:
            refresh_token.pop_request()
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert row.next_refresh_at is not None
    backoff = (row.next_refresh_at - timezone.now()).total_seconds()
    assert abs(caught.value.when - backoff) < 1
    assert abs(published[0]["countdown"] - backoff) < 1


@pytest.mark.django_db
def test_an_eager_token_task_that_failed_says_so_rather_than_not_due(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    # A project's tests with task_always_eager and no propagation: an eager retry would run
    # at once, find the row backing off, and report "not_due" for a failed refresh.
    provider_http.post(TOKEN_URL, status=503)
    result = refresh_token.apply(args=[due_token.pk], throw=False)
    assert result.state == "FAILURE"
    assert isinstance(result.result, ProviderUnavailable)
    assert len(provider_http.calls) == 1


@pytest.mark.django_db
def test_the_token_task_never_retries_invalid_grant(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(ReauthorizationRequired):
        refresh_token.apply(args=[due_token.pk]).get()
    assert len(provider_http.calls) == 1


def test_the_token_task_acks_late_and_outlives_the_http_deadline() -> None:
    assert refresh_token.acks_late is True
    assert refresh_token.max_retries == 8
    assert refresh_token.soft_time_limit > 10  # HTTP_TIMEOUT's default
    assert refresh_token.time_limit > refresh_token.soft_time_limit


def test_the_token_tasks_soft_limit_outlasts_its_worst_case_at_the_default_timeout() -> None:
    # A wait for another worker's refresh, its own provider call, a second try at the save.
    default_http_timeout = 10
    worst = 2 * default_http_timeout + LOCK_WAIT_SLACK + RECOVERY_BUDGET
    assert refresh_token.soft_time_limit > worst
    assert refresh_token_if_due.soft_time_limit > default_http_timeout + RECOVERY_BUDGET


def test_the_example_project_ships_a_beat_entry_for_the_sweep(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXAMPLE_VAR_DIR", str(tmp_path))
    # Read the settings file alone: importing the package would create its Celery app.
    example = runpy.run_path(str(ROOT / "example_project" / "settings.py"))
    assert example["CELERY_BEAT_SCHEDULE"] == SCHEDULE
    assert refresh_due_tokens.name == SCHEDULE["frameio-oauth-refresh-due"]["task"]


# The scheduler closes database connections as it goes, so it needs committed transactions.
@pytest.mark.django_db(transaction=True)
def test_django_celery_beats_database_scheduler_takes_the_schedule() -> None:
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    app.conf.beat_schedule = SCHEDULE
    try:
        scheduler = DatabaseScheduler(app=app)
        task = PeriodicTask.objects.get(name="frameio-oauth-refresh-due")
        assert task.task == "frameio_oauth.tasks.refresh_due_tokens"
        assert (task.interval.every, task.interval.period) == (60, "seconds")
        assert "frameio-oauth-refresh-due" in scheduler.schedule
    finally:
        app.conf.beat_schedule = {}


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fanout", [False, True], ids=["in-task", "fanned-out"])
def test_a_real_worker_on_redis_runs_the_sweep_and_the_token_changes(
    due_token: OAuthToken, fanout: bool
) -> None:
    from tests.support.fake_provider import rotating_provider

    with rotating_provider() as (url, provider):
        token = OAuthToken.objects.get(pk=due_token.pk)
        token.refresh_token = provider.issue()
        token.save()
        app.conf.update(task_always_eager=False, broker_url=REDIS_URL, result_backend=REDIS_URL)
        try:
            from django.conf import settings
            from django.test import override_settings

            oauth = {**settings.FRAMEIO_OAUTH, "TOKEN_URL": url}
            ran_on_worker: list[str] = []

            def record(sender: Any, **kwargs: Any) -> None:
                ran_on_worker.append(sender.name)

            task_prerun.connect(record, weak=False)
            with (
                override_settings(FRAMEIO_OAUTH=oauth),
                start_worker(app, pool="threads", concurrency=2, perform_ping_check=False),
            ):
                result = app.tasks[refresh_due_tokens.name].delay(fanout=fanout)
                summary = result.get(timeout=30)
                if fanout:
                    deadline = time.monotonic() + 30
                    while OAuthToken.objects.due().exists() and time.monotonic() < deadline:
                        time.sleep(0.1)
        finally:
            task_prerun.disconnect(record)
            app.conf.update(task_always_eager=True)
    assert not isinstance(result, EagerResult)
    if fanout:
        assert summary == {"enqueued": 1, "revoked": 0}
        # The row's refresh went through the broker as a task of its own.
        assert sorted(ran_on_worker) == sorted([refresh_token_if_due.name, refresh_due_tokens.name])
    else:
        assert summary["refreshed"] == 1
        assert ran_on_worker == [refresh_due_tokens.name]
    after = OAuthToken.objects.get(pk=due_token.pk)
    assert after.access_token != due_token.access_token
    assert after.refresh_token in provider.live


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_drops_a_fanned_out_task_that_waited_past_its_expiry(
    due_token: OAuthToken,
) -> None:
    from tests.support.fake_provider import rotating_provider

    with rotating_provider() as (url, provider):
        app.conf.update(task_always_eager=False, broker_url=REDIS_URL, result_backend=REDIS_URL)
        try:
            from django.conf import settings
            from django.test import override_settings

            oauth = {**settings.FRAMEIO_OAUTH, "TOKEN_URL": url}
            with override_settings(FRAMEIO_OAUTH=oauth):
                # Enqueued while no worker consumes, as behind a backlog.
                summary = refresh_due_tokens.apply(kwargs={"fanout": True, "expires": 0.2}).get()
                time.sleep(0.5)
                with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False):
                    with app.connection_for_write() as conn:
                        redis = conn.default_channel.client
                        queue = app.conf.task_default_queue
                        deadline = time.monotonic() + 10
                        while redis.llen(queue) and time.monotonic() < deadline:
                            time.sleep(0.05)
                    time.sleep(0.5)  # a task that ran would have called the provider by now
        finally:
            app.conf.update(task_always_eager=True)
    assert summary == {"enqueued": 1, "revoked": 0}
    assert provider.requests == 0
    assert OAuthToken.objects.due().filter(pk=due_token.pk).exists()


@pytest.fixture
def soft_time_limit_in_the_provider_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(refresh_token: str, **kwargs: Any) -> Any:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(provider, "refresh_grant", interrupted)


@pytest.mark.django_db
@pytest.mark.usefixtures("soft_time_limit_in_the_provider_call")
def test_a_soft_time_limit_in_the_provider_call_is_recorded_as_transient(
    due_token: OAuthToken,
) -> None:
    with pytest.raises(SoftTimeLimitExceeded):
        services.refresh_if_due(due_token.pk)
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert (row.status, row.failure_count) == (OAuthToken.Status.ACTIVE, 1)
    assert row.refresh_token == due_token.refresh_token
    assert row.next_refresh_at > timezone.now()
    assert "time limit" in row.last_error


@pytest.mark.django_db
@pytest.mark.usefixtures("soft_time_limit_in_the_provider_call")
def test_a_soft_time_limit_ends_the_sweep_at_the_row_it_interrupted(
    make_due_tokens: Any,
) -> None:
    make_due_tokens(2)
    with pytest.raises(SoftTimeLimitExceeded):
        services.refresh_due()
    assert OAuthToken.objects.filter(failure_count=1).count() == 1
    assert OAuthToken.objects.due().count() == 1
