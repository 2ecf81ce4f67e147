"""When to try again after a transient provider failure: exponential backoff, jittered into
the upper half of each delay (never sooner than half the backoff, so an outage is not hit
early)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

BACKOFF_BASE = 30.0
BACKOFF_CAP = 30 * 60.0


def retry_time(now: datetime, failures: int, retry_after: float | None = None) -> datetime:
    """``now`` plus 30 s doubling per consecutive failure up to 30 min, jittered into its
    upper half; at least the provider's ``Retry-After``, but never more than the cap, so a
    wild header cannot park a row for years."""
    delay = min(BACKOFF_BASE * 2 ** max(failures - 1, 0), BACKOFF_CAP)
    delay = random.uniform(delay / 2, delay)  # noqa: S311
    if retry_after:
        delay = max(delay, min(retry_after, BACKOFF_CAP))
    return now + timedelta(seconds=delay)
