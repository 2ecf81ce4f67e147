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

from celery import shared_task

from . import services
from .exceptions import ProviderUnavailable


@shared_task(name="frameio_oauth.tasks.refresh_due_tokens", ignore_result=False)
def refresh_due_tokens(limit: int | None = None, fanout: bool = False) -> dict[str, int]:
    """The beat sweep. Several workers and overlapping ticks are safe: rows are skip-locked.

    ``fanout=True`` enqueues one ``refresh_due_token`` task per due row instead of refreshing
    in this task, so a large backlog spreads over every worker (see README, "1,000,000 users").
    """
    if not fanout:
        return services.refresh_due(limit).as_dict()
    enqueued = 0
    for token_id in services.due_token_ids(limit):
        refresh_due_token.delay(token_id)
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
    next_refresh_at back with backoff, and a later sweep picks it up again."""
    return services.refresh_if_due(token_id).value


@shared_task(
    name="frameio_oauth.tasks.refresh_token",
    acks_late=True,
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=30,
    retry_backoff_max=30 * 60,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=60,
    time_limit=90,
)
def refresh_token(token_id: int, force: bool = False) -> str:
    """Refresh one token now. Retries only transient failures, with backoff and jitter.

    The time limits sit well above HTTP_TIMEOUT (10 s by default), whose deadline ends every
    provider call first; raise them if you raise HTTP_TIMEOUT past 40 s.
    """
    token = services.refresh(token_id, force=force)
    return token.status
