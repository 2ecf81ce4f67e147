"""Celery itself: a real worker on Redis runs the sweep, beat takes the schedule, and a soft
time limit in a refresh is recorded as a transient failure. The tasks run eagerly are in
test_tasks.py."""

from __future__ import annotations

import runpy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.exceptions import SoftTimeLimitExceeded
from celery.result import EagerResult
from celery.signals import task_prerun
from django.utils import timezone

from frameio_oauth import provider, services
from frameio_oauth.models import OAuthToken
from frameio_oauth.tasks import refresh_due_tokens, refresh_token_if_due
from tests.support.celery_app import app
from tests.support.servers import issued_by
from tests.support.services_probe import REDIS_URL, redis_available

ROOT = Path(__file__).resolve().parent.parent
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
            issued_by(oauth)
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
def test_a_real_worker_runs_a_row_that_comes_due_after_the_tick_when_it_comes_due(
    user: Any, make_token: Any
) -> None:
    from datetime import timedelta

    from django.conf import settings
    from django.test import override_settings

    from tests.support.fake_provider import rotating_provider

    with rotating_provider() as (url, provider_state):
        oauth = {**settings.FRAMEIO_OAUTH, "TOKEN_URL": url}
        with override_settings(FRAMEIO_OAUTH=oauth):
            app.conf.update(task_always_eager=False, broker_url=REDIS_URL, result_backend=REDIS_URL)
            try:
                with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
                    # Due two seconds after the tick, counted once the worker is up: a slow
                    # start must not make the row due by the time of the tick.
                    due_at = timezone.now() + timedelta(seconds=2)
                    token = make_token(
                        user, refresh_token=provider_state.issue(), next_refresh_at=due_at
                    )
                    summary = refresh_due_tokens.apply(kwargs={"fanout": True, "expires": 10}).get()
                    assert provider_state.requests == 0  # not before its time
                    deadline = time.monotonic() + 15
                    while not provider_state.requests and time.monotonic() < deadline:
                        time.sleep(0.05)
                    refreshed_at = timezone.now()
                    time.sleep(0.3)
            finally:
                app.conf.update(task_always_eager=True)
    assert summary == {"enqueued": 1, "revoked": 0}
    assert provider_state.requests == 1
    # Run at its due time, not on the tick two seconds before.
    assert due_at - timedelta(seconds=1) <= refreshed_at < due_at + timedelta(seconds=3)
    row = OAuthToken.objects.get(pk=token.pk)
    assert row.last_refreshed_at is not None
    assert row.last_refreshed_at >= due_at - timedelta(seconds=1)


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


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_prefork_worker_process_refreshes_fanned_out_rows_through_the_broker(
    make_due_tokens: Any, tmp_path: Path
) -> None:
    # Celery's default pool forks its children after the worker has imported the app: each
    # child needs its own deadline watchdog and its own HTTP connections.
    import json
    import os
    import subprocess
    import sys

    from django.conf import settings
    from django.db import connection

    from tests.support.fake_provider import rotating_provider

    due = make_due_tokens(4)
    with rotating_provider() as (url, provider_state):
        for token in due:
            row = OAuthToken.objects.get(pk=token.pk)
            row.refresh_token = provider_state.issue()
            row.save()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.support.settings",
            "FRAMEIO_TEST_PGDATABASE": connection.settings_dict["NAME"],
            "FRAMEIO_TEST_OAUTH_JSON": json.dumps({"TOKEN_URL": url}),
        }
        log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.support.celery_app", "worker",
             "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
             "--queues", settings.CELERY_TASK_DEFAULT_QUEUE,
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        app.conf.update(task_always_eager=False, broker_url=REDIS_URL, result_backend=REDIS_URL)
        try:
            refresh_due_tokens.delay(fanout=True)
            deadline = time.monotonic() + 60
            while OAuthToken.objects.due().exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            app.conf.update(task_always_eager=True)
            worker.terminate()
            worker.wait(timeout=30)
            log.close()
        assert not OAuthToken.objects.due().exists(), (tmp_path / "worker.log").read_text()[-3000:]
        for token in due:
            assert OAuthToken.objects.get(pk=token.pk).refresh_token in provider_state.live
        assert provider_state.reuses == 0
