"""Celery tasks: thin wrappers around services. Uses @shared_task, so the project's own Celery
app (whatever it is called) picks them up; this module never imports one.

Beat schedule (every minute)::

    CELERY_BEAT_SCHEDULE = {
        "frameio-oauth-refresh-due": {
            "task": "frameio_oauth.tasks.refresh_due_tokens",
            "schedule": 60.0,
        },
    }
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.utils import timezone

from . import services
from .exceptions import ProviderUnavailable


@shared_task(name="frameio_oauth.tasks.refresh_due_tokens", ignore_result=False)
def refresh_due_tokens(
    limit: int | None = None, fanout: bool = False, expires: float | None = 60.0
) -> dict[str, int]:
    """The beat sweep. Several workers and overlapping ticks are safe: rows are skip-locked.

    ``fanout=True`` enqueues one ``refresh_due_token`` task per due row instead of refreshing
    in this task, so a large backlog spreads over every worker (see README, "1,000,000 users").
    Each such task is dropped unrun once ``expires`` seconds old (keep it at the beat
    interval): every tick enqueues each row still due again, so without it a backlog in the
    workers would grow by a whole tick's rows every tick, mostly tasks for rows already done.
    """
    if not fanout:
        return services.refresh_due(limit).as_dict()
    enqueued = 0
    for token_id in services.due_token_ids(limit):
        refresh_due_token.apply_async((token_id,), expires=expires)
        enqueued += 1
    # Deferred revocations are few (only those a provider outage held up): done right here.
    return {"enqueued": enqueued, "revoked": services.retry_due_revocations()}


@shared_task(
    name="frameio_oauth.tasks.refresh_due_token",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
)
def refresh_due_token(token_id: int) -> str:
    """One row of a fanned-out sweep. No Celery retry: a failure pushes the row's
    next_refresh_at back with backoff, and a later sweep picks it up again.

    It never waits for a lock (SKIP LOCKED), so at worst it takes HTTP_TIMEOUT plus up to 10 s
    of saving the answer again if the first save fails: 20 s at the default HTTP_TIMEOUT.
    """
    return services.refresh_if_due(token_id).value


# refresh_token's retries: where no row recorded the failure, 30 s doubling to 30 min,
# full jitter (Celery's own exponential backoff).
RETRY_BACKOFF = 30
RETRY_BACKOFF_MAX = 30 * 60


@shared_task(
    bind=True,
    name="frameio_oauth.tasks.refresh_token",
    acks_late=True,
    max_retries=8,
    soft_time_limit=60,
    time_limit=90,
)
def refresh_token(self: Any, token_id: int, force: bool = False) -> str:
    """Refresh one token now; returns ``"refreshed"``, or ``"not_due"`` if it was fresh.
    Retries only transient failures (``ProviderUnavailable``), with backoff and jitter.

    A failed refresh backs the row off (exponential, jittered, honouring Retry-After), and
    the retry is scheduled for that time: sooner, it would find the token not due and end
    without trying. Where no row recorded the failure (the wait for another worker's refresh
    ran out), Celery's exponential backoff applies. Run eagerly (``task_always_eager``), a
    retry would run at once, find the row backing off and say ``"not_due"``, so there the
    failure is raised instead.

    The worst case of one run: a NOWAIT lock attempt, a wait for another worker's refresh to
    finish (at most HTTP_TIMEOUT + 5 s), this refresh's own provider call (at most
    HTTP_TIMEOUT), and, if its save or commit fails, up to 10 s of saving the answer again:
    2 * HTTP_TIMEOUT + 15 s, 35 s at the default HTTP_TIMEOUT of 10 s. The soft limit must stay
    above that: raise both limits if you raise HTTP_TIMEOUT past 20 s.
    """
    try:
        return services.refresh_with_outcome(token_id, force=force)[1].value
    except ProviderUnavailable as exc:
        if self.request.is_eager:
            raise
        raise self.retry(exc=exc, countdown=retry_countdown(exc, self.request.retries)) from exc


def retry_countdown(error: ProviderUnavailable, retries: int) -> float:
    """Seconds until ``refresh_token`` tries again after ``error``."""
    if error.retry_at is not None:
        return max((error.retry_at - timezone.now()).total_seconds(), 0.0)
    return float(
        get_exponential_backoff_interval(
            RETRY_BACKOFF, retries, RETRY_BACKOFF_MAX, full_jitter=True
        )
    )
