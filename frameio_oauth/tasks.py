"""Celery tasks: thin wrappers around services. @shared_task, so the project's own Celery app
picks them up; this module never imports one. Beat entry and time limits: docs/operations.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.utils import timezone

from . import services
from .exceptions import ProviderUnavailable


@shared_task(name="frameio_oauth.tasks.refresh_due_tokens", ignore_result=False)
def refresh_due_tokens(
    limit: int | None = None, fanout: bool = False, expires: float | None = 60.0
) -> dict[str, int]:
    """The beat sweep. Several workers and overlapping ticks are safe: rows are skip-locked.

    ``fanout=True`` enqueues one :func:`refresh_token_if_due` per row due now or within the
    next ``expires`` seconds (keep it at the beat interval), each to run when its row comes
    due and dropped unrun ``expires`` seconds after that: the next tick enqueues every row
    still due again.
    """
    if not fanout:
        return services.refresh_due(limit).as_dict()
    now = timezone.now()
    lifetime = None if expires is None else timedelta(seconds=expires)

    def enqueue(token_id: int, eta: datetime | None) -> None:
        refresh_token_if_due.apply_async(
            (token_id,),
            eta=eta,
            expires=None if lifetime is None else (eta or now) + lifetime,
        )

    enqueued = services.fan_out_due(enqueue, limit, ahead=expires or 0.0)
    # Deferred revocations are few (only those a provider outage held up): done right here.
    return {"enqueued": enqueued, "revoked": services.retry_due_revocations()}


# A fanned-out task takes a row due within this many seconds as due: a task sent to run at
# its row's due time may start a little early (timers, a worker clock a little ahead), and
# would otherwise leave the row to the next tick, which would also send it a second time.
ON_TIME = 1.0


def _refresh_if_due(token_id: int) -> str:
    return services.refresh_if_due(token_id, early=ON_TIME).value


# One row of a fanned-out sweep: never waits for a lock, no Celery retry (a failure backs the
# row off, and a later sweep takes it again).
refresh_token_if_due = shared_task(
    _refresh_if_due,
    name="frameio_oauth.tasks.refresh_token_if_due",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
)
# Its name before 0.2, one letter from refresh_due_tokens: messages a previous version queued
# still run under it during a deploy.
refresh_due_token = shared_task(
    _refresh_if_due,
    name="frameio_oauth.tasks.refresh_due_token",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
)


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
    Retries only transient failures (``ProviderUnavailable``), when the row's backoff ends.

    Run eagerly (``task_always_eager``) a retry would run at once and find the row backing
    off, so there the failure is raised instead.
    """
    try:
        return services.refresh_with_outcome(token_id, force=force)[1].value
    except ProviderUnavailable as exc:
        if self.request.is_eager:
            raise
        raise self.retry(exc=exc, countdown=retry_countdown(exc, self.request.retries)) from exc


def retry_countdown(error: ProviderUnavailable, retries: int) -> float:
    """Seconds until ``refresh_token`` tries again after ``error``: when the row's backoff
    ends, or where no row recorded the failure (the wait for another worker's refresh ran
    out), the same backoff policy counted by this task's retries."""
    if error.retry_at is not None:
        return max((error.retry_at - timezone.now()).total_seconds(), 0.0)
    return services.retry_delay(retries + 1)
