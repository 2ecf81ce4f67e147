"""When a token is due: one rule, set when a token is issued, that on-demand calls and the
sweep both read; and when to try again after a failure (one backoff policy)."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from django.utils import timezone

from .. import provider
from ..conf import conf
from ..exceptions import UnusableProviderValue
from ..models import OAuthToken

logger = logging.getLogger("frameio_oauth.services")

# The lead never exceeds this fraction of the lifetime the provider gave, so a margin longer
# than a short-lived token cannot make it due on issue (a refresh on every call).
MAX_LEAD_FRACTION = 0.5
# Tokens issued together spread over up to this fraction of their lifetime (at most the margin).
JITTER_FRACTION = 0.1


BACKOFF_BASE = 30.0
BACKOFF_CAP = 30 * 60.0
# How soon an expired token is tried again after a failure (rather than after the backoff).
EXPIRED_RETRY = 10.0


def needs_refresh(token: OAuthToken) -> bool:
    """Whether ``refresh(token.pk)`` (not forced) would call the provider now (never for a
    grant of another server, which it marks instead)."""
    return (
        token.status == OAuthToken.Status.ACTIVE
        and not token.issued_elsewhere()
        and is_due(token, timezone.now())
    )


def is_due(token: OAuthToken, now: datetime) -> bool:
    """Due once ``next_refresh_at`` has come (also the backoff's retry time after a failure);
    a token with no schedule (no refresh token) once it has expired."""
    if token.next_refresh_at is None:
        return token.is_expired(now)
    return token.next_refresh_at <= now


def apply_tokens(
    token: OAuthToken,
    response: provider.TokenResponse,
    *,
    keep_refresh_token: bool,
    issued_at: datetime,
) -> None:
    token.access_token = response.access_token
    if response.refresh_token_unusable:
        token.refresh_token = None  # the one presented may be spent; its successor is unusable
    elif response.refresh_token is not None or not keep_refresh_token:
        token.refresh_token = response.refresh_token
    # A refresh answer cannot be refused (its refresh token may be rotated already), so a value
    # that does not fit its column gives way to a safe one; a new grant was checked before.
    token.token_type = _fitting("token_type", response.token_type, instead="Bearer")
    if response.scope is not None:
        token.scope = _fitting("scope", response.scope, instead=token.scope)
    token.expires_at = issued_at + timedelta(seconds=response.expires_in)
    token.next_refresh_at = (
        next_refresh_time(issued_at, response.expires_in) if token.refresh_token else None
    )


def _fitting(name: str, value: str, *, instead: str) -> str:
    try:
        OAuthToken.check_provider_value(name, value)
    except UnusableProviderValue as exc:
        logger.warning("token endpoint answer: %s; keeping %r instead", exc, instead)
        return instead
    return value


def next_refresh_time(issued_at: datetime, lifetime: float) -> datetime:
    """``issued_at + lifetime - lead - jitter``, the jitter uniform in [0, its most]
    (:func:`refresh_lead`)."""
    lead, most_jitter = refresh_lead(lifetime, conf.refresh_margin)
    jitter = random.uniform(0, most_jitter)  # noqa: S311
    return issued_at + timedelta(seconds=max(lifetime - lead - jitter, 0))


def refresh_lead(lifetime: float, margin: float) -> tuple[float, float]:
    """How long before expiry a token of ``lifetime`` comes due, and the most jitter added to
    that: the lead is ``margin`` (REFRESH_MARGIN), the jitter up to min(lifetime / 10,
    margin), and the two together at most half the lifetime, so no token is replaced before
    half its life."""
    most_jitter = min(lifetime * JITTER_FRACTION, margin)
    lead = max(min(margin, lifetime * MAX_LEAD_FRACTION - most_jitter), 0.0)
    return lead, most_jitter


def retry_delay(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: 30 s doubling to 30 min,
    drawn from the upper half of that, so an outage is never hit early."""
    delay = min(BACKOFF_BASE * 2 ** max(failures - 1, 0), BACKOFF_CAP)
    return random.uniform(delay / 2, delay)  # noqa: S311


def retry_time(
    failed_at: datetime,
    failures: int,
    retry_after: float | None = None,
    *,
    expires_at: datetime | None = None,
) -> datetime:
    """When to try again: :func:`retry_delay` after ``failed_at``, at least the provider's
    ``Retry-After`` but never past the cap, so a wild header cannot park a row for years.

    A token that will have expired before then is useless to its user meanwhile: it is tried
    again within EXPIRED_RETRY seconds of its expiry instead, unless Retry-After says later.
    """
    delay = retry_delay(failures)
    if expires_at is not None:
        delay = min(delay, max((expires_at - failed_at).total_seconds(), 0) + EXPIRED_RETRY)
    if retry_after:
        delay = max(delay, min(retry_after, BACKOFF_CAP))
    return failed_at + timedelta(seconds=delay)
