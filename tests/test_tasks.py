"""The Celery tasks, run eagerly: what each returns, when the token task retries, and its
limits. Real workers, beat and soft time limits are in test_celery.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
import time_machine
from celery.exceptions import Retry
from django.utils import timezone

from frameio_oauth.exceptions import ProviderUnavailable, ReauthorizationRequired
from frameio_oauth.models import OAuthToken
from frameio_oauth.services import LOCK_WAIT_SLACK, RECOVERY_BUDGET
from frameio_oauth.tasks import (
    refresh_due_tokens,
    refresh_token,
    refresh_token_if_due,
    retry_countdown,
)
from tests.support.frameio import NEW, TOKEN_URL
from tests.support.tokens import MISSING_ID

pytestmark = pytest.mark.django_db


# --- the sweep task ---------------------------------------------------------------------------


def test_the_sweep_task_returns_its_summary(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    summary = refresh_due_tokens.apply().get()
    assert summary == {
        "refreshed": 1,
        "skipped": 0,
        "failed": 0,
        "reauth": 0,
        "revoked": 0,
        "revocations_failed": 0,
    }


def test_a_fanned_out_sweep_enqueues_one_task_per_due_row(
    make_due_tokens: Any, provider_http: responses.RequestsMock
) -> None:
    make_due_tokens(3)
    provider_http.post(TOKEN_URL, json=NEW)
    assert refresh_due_tokens.apply(kwargs={"fanout": True}).get() == {"enqueued": 3, "revoked": 0}
    assert len(provider_http.calls) == 3
    assert not OAuthToken.objects.due().exists()


def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, dict[str, Any]]]:
    sent: list[tuple[int, dict[str, Any]]] = []
    monkeypatch.setattr(
        refresh_token_if_due, "apply_async", lambda args, **options: sent.append((args[0], options))
    )
    return sent


def test_a_fanned_out_sweeps_tasks_expire_after_one_beat_interval(
    make_due_tokens: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_due_tokens(2)
    sent = sent_tasks(monkeypatch)
    now = timezone.now()
    refresh_due_tokens.apply(kwargs={"fanout": True}).get()
    refresh_due_tokens.apply(kwargs={"fanout": True, "expires": 300}).get()
    assert [options["eta"] for _, options in sent] == [None] * 4
    lives = [(options["expires"] - now).total_seconds() for _, options in sent]
    assert [round(life / 10) * 10 for life in lives] == [60, 60, 300, 300]


def test_a_fanned_out_tick_sends_a_row_due_within_the_interval_to_run_when_it_comes_due(
    user: Any, other_user: Any, make_token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    soon = make_token(user, next_refresh_at=now + timedelta(seconds=30))
    make_token(other_user, next_refresh_at=now + timedelta(seconds=90))
    sent = sent_tasks(monkeypatch)
    assert refresh_due_tokens.apply(kwargs={"fanout": True, "expires": 60}).get()["enqueued"] == 1
    [(token_id, options)] = sent
    assert token_id == soon.pk
    # At its due time, and dropped a beat interval after that.
    assert options["eta"] == soon.next_refresh_at
    assert options["expires"] == options["eta"] + timedelta(seconds=60)


def test_a_fanned_out_task_takes_a_row_due_within_a_second_as_due(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    # Sent to run at the due time, it may start a hair early (a timer, a clock a little
    # ahead): not leaving the row to the next tick.
    provider_http.post(TOKEN_URL, json=NEW)
    OAuthToken.objects.filter(pk=due_token.pk).update(
        next_refresh_at=timezone.now() + timedelta(milliseconds=500)
    )
    assert refresh_token_if_due.apply(args=[due_token.pk]).get() == "refreshed"
    OAuthToken.objects.filter(pk=due_token.pk).update(
        next_refresh_at=timezone.now() + timedelta(seconds=3)
    )
    assert refresh_token_if_due.apply(args=[due_token.pk]).get() == "not_due"


def test_a_fanned_out_tick_with_no_expiry_looks_no_further_than_now(
    user: Any, make_token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_token(user, next_refresh_at=timezone.now() + timedelta(seconds=30))
    sent = sent_tasks(monkeypatch)
    assert refresh_due_tokens.apply(kwargs={"fanout": True, "expires": None}).get()["enqueued"] == 0
    assert sent == []


# --- the per-token tasks ----------------------------------------------------------------------


@pytest.mark.parametrize("task", [refresh_token_if_due, refresh_token], ids=lambda task: task.name)
def test_a_per_token_task_says_whether_it_refreshed_and_skips_a_row_no_longer_due(
    due_token: OAuthToken, provider_http: responses.RequestsMock, task: Any
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    assert task.apply(args=[due_token.pk]).get() == "refreshed"
    # A second run for the same row (an overlapping beat tick) makes no provider call.
    assert task.apply(args=[due_token.pk]).get() == "not_due"
    assert len(provider_http.calls) == 1


def test_a_fanned_out_task_for_a_row_removed_meanwhile_ends_quietly(
    provider_http: responses.RequestsMock,
) -> None:
    # SKIP LOCKED finds a removed row as it finds a held one: nothing to take, no error.
    assert refresh_token_if_due.apply(args=[MISSING_ID]).get() == "gone"
    assert len(provider_http.calls) == 0


def test_a_fanned_out_task_skips_a_row_that_needs_reauthorization_meanwhile(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(
        user, status=OAuthToken.Status.REAUTH_REQUIRED, next_refresh_at=timezone.now()
    )
    assert refresh_token_if_due.apply(args=[token.pk]).get() == "not_due"
    assert len(provider_http.calls) == 0
    assert OAuthToken.objects.get(pk=token.pk).status == OAuthToken.Status.REAUTH_REQUIRED


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


def test_the_token_tasks_retry_is_due_when_the_row_backs_off_until(
    due_token: OAuthToken,
    provider_http: responses.RequestsMock,
    failed_with_retry_after: ProviderUnavailable,
) -> None:
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert row.next_refresh_at is not None
    assert failed_with_retry_after.retry_at == row.next_refresh_at
    backoff = (row.next_refresh_at - timezone.now()).total_seconds()
    # 120 s less the time since the failure, a few seconds at most on a busy machine.
    assert 110 <= backoff <= 120
    # The retry runs when the row is due again, not before (it would find it not due).
    assert abs(retry_countdown(failed_with_retry_after, 0) - backoff) < 5
    assert len(provider_http.calls) == 1


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
