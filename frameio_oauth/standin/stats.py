"""In-memory counters for tests that assert how often the client hit the token endpoint."""

from __future__ import annotations

import threading
from collections import Counter

# Always reported, so a test can read them without guarding against a missing key.
_ALWAYS_REPORTED = ("authorization_code", "refresh_token")

_lock = threading.Lock()
_token_requests: Counter[str] = Counter()


def record_token_request(grant_type: str) -> None:
    with _lock:
        _token_requests[grant_type or "unknown"] += 1


def snapshot() -> dict[str, dict[str, int]]:
    with _lock:
        counts = dict.fromkeys(_ALWAYS_REPORTED, 0)
        counts.update(_token_requests)
    return {"token_requests": counts}


def reset() -> None:
    with _lock:
        _token_requests.clear()
