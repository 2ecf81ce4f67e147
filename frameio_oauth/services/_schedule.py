"""When a token is due, and the schedule a newly issued token gets."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.utils import timezone

from .. import provider
from ..conf import conf
from ..models import OAuthToken


def needs_refresh(token: OAuthToken) -> bool:
    """Whether ``refresh(token.pk)`` (not forced) would call the provider now."""
    return token.status == OAuthToken.Status.ACTIVE and is_due(token, timezone.now())


def is_due(token: OAuthToken, now: datetime, *, sweep: bool = False) -> bool:
    if token.expires_at - timedelta(seconds=conf.refresh_margin) > now:
        # The sweep also honours the jittered schedule, which may fall a little earlier.
        return sweep and token.next_refresh_at is not None and token.next_refresh_at <= now
    # Inside the margin. After a failure, wait for the backoff's retry time (which honours
    # Retry-After) while the token still works: otherwise, in an outage, every call would
    # make a provider call of up to HTTP_TIMEOUT, and every waiter on the lock another.
    if token.failure_count == 0 or token.next_refresh_at is None or token.next_refresh_at <= now:
        return True
    return token.is_expired(now)


def apply_tokens(
    token: OAuthToken, response: provider.TokenResponse, *, keep_refresh_token: bool
) -> None:
    now = timezone.now()
    token.access_token = response.access_token
    if response.refresh_token is not None or not keep_refresh_token:
        token.refresh_token = response.refresh_token
    token.token_type = response.token_type[:32]
    if response.scope is not None:
        token.scope = response.scope[:1024]
    token.expires_at = now + timedelta(seconds=response.expires_in)
    token.next_refresh_at = (
        next_refresh_time(now, response.expires_in) if token.refresh_token else None
    )


def next_refresh_time(issued_at: datetime, lifetime: int) -> datetime:
    """Expiry - margin - jitter, so tokens issued together do not all refresh together."""
    lead = min(conf.refresh_margin, lifetime // 2)
    spread = random.uniform(0, min(lifetime * 0.1, conf.refresh_margin))  # noqa: S311
    return issued_at + timedelta(seconds=max(lifetime - lead - spread, 0))
