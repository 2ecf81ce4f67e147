"""How the stored tokens stand, for operators: counts by status and by key, the rows failing
now, the overdue backlog and the revocations still pending (docs/operations.md, "Status")."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Min, Q
from django.db.models.functions import Substr
from django.utils import timezone

from ..crypto import KID_LENGTH, VERSION, envelope_key_id, get_cipher
from ..models import OAuthToken
from . import _db

# "v1:<kid>:": as much of an envelope as names its key, so no ciphertext leaves the database.
_KEY_PREFIX = len(VERSION) + 1 + KID_LENGTH + 1
# Failing rows listed by name; the rest are counted.
FAILING_LISTED = 20


class KeyUse(enum.Enum):
    PRIMARY = "primary"  # encrypts every new secret
    OLD = "old"  # still decrypts; frameio_rotate_keys moves its rows to the primary
    MISSING = "missing"  # in no ENCRYPTION_KEYS entry: its rows cannot be decrypted


@dataclass(frozen=True)
class KeyCount:
    key_id: str
    rows: int
    use: KeyUse


@dataclass(frozen=True)
class FailingToken:
    """An active row whose last refresh failed: it is backing off until ``next_attempt``."""

    token_id: int
    user: str
    failures: int
    last_error: str
    next_attempt: datetime | None
    expires_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "user": self.user,
            "failures": self.failures,
            "last_error": self.last_error,
            "next_attempt": _iso(self.next_attempt),
            "expires_at": _iso(self.expires_at),
        }


@dataclass(frozen=True)
class Backlog:
    """Active rows due and not refreshed yet, and how long the oldest of them has waited."""

    overdue: int
    oldest_overdue_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"overdue": self.overdue, "oldest_overdue_seconds": self.oldest_overdue_seconds}


@dataclass(frozen=True)
class TokenStatus:
    by_status: dict[str, int]
    # Rows per encryption key id ("unknown" for a value that is no envelope); a row whose two
    # secrets sit under two keys counts for both.
    by_key_id: dict[str, int]
    failing: int
    failing_rows: list[FailingToken]
    backlog: Backlog
    revocations_pending: int
    taken_at: datetime

    def key_counts(self) -> list[KeyCount]:
        """``by_key_id`` with each key's place in ENCRYPTION_KEYS."""
        cipher = get_cipher()
        return [
            KeyCount(kid, rows, _key_use(kid, cipher.primary_kid, cipher.key_ids))
            for kid, rows in self.by_key_id.items()
        ]

    @property
    def overdue(self) -> int:
        return self.backlog.overdue

    @property
    def oldest_overdue_seconds(self) -> float | None:
        return self.backlog.oldest_overdue_seconds

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``manage.py frameio_oauth_status --json`` (docs/operations.md)."""
        return {
            "by_status": self.by_status,
            "by_key_id": self.by_key_id,
            "failing": {
                "count": self.failing,
                "rows": [row.as_dict() for row in self.failing_rows],
            },
            **self.backlog.as_dict(),
            "revocations_pending": self.revocations_pending,
        }


def token_status(
    now: datetime | None = None, *, failing_listed: int = FAILING_LISTED
) -> TokenStatus:
    """The whole summary: one grouped scan of the table, one index range scan for the
    backlog, and one short read of the failing rows when there are any."""
    now = now or timezone.now()
    db = _db.alias()
    grouped = (
        OAuthToken.objects.using(db)
        .values(
            "status",
            access_kid=Substr("access_token", 1, _KEY_PREFIX),
            refresh_kid=Substr("refresh_token", 1, _KEY_PREFIX),
        )
        .annotate(
            rows=Count("pk"),
            failing=Count("pk", filter=Q(status=OAuthToken.Status.ACTIVE, failure_count__gt=0)),
        )
        .order_by()
    )
    by_status: Counter[str] = Counter({status: 0 for status in OAuthToken.Status.values})
    by_key_id: Counter[str] = Counter()
    failing = 0
    for group in grouped:
        by_status[group["status"]] += group["rows"]
        failing += group["failing"]
        kids = {_key_id(group["access_kid"]), _key_id(group["refresh_kid"])} - {None}
        for kid in kids:
            by_key_id[str(kid)] += group["rows"]
    return TokenStatus(
        by_status=dict(by_status),
        by_key_id=dict(sorted(by_key_id.items())),
        failing=failing,
        failing_rows=failing_tokens(failing_listed) if failing else [],
        backlog=backlog(now),
        revocations_pending=by_status[OAuthToken.Status.REVOKED],
        taken_at=now,
    )


def backlog(now: datetime | None = None) -> Backlog:
    """The overdue rows: a range scan of the due index, cheap at any table size."""
    now = now or timezone.now()
    due = OAuthToken.objects.using(_db.alias()).due(now).order_by()
    found = due.aggregate(overdue=Count("pk"), oldest=Min("next_refresh_at"))
    oldest = found["oldest"]
    return Backlog(
        overdue=found["overdue"],
        oldest_overdue_seconds=None if oldest is None else max((now - oldest).total_seconds(), 0.0),
    )


def revocations_pending() -> int:
    """Disconnected grants whose revocation Frame.io has not confirmed yet."""
    return OAuthToken.objects.using(_db.alias()).filter(status=OAuthToken.Status.REVOKED).count()


def failing_tokens(limit: int = FAILING_LISTED) -> list[FailingToken]:
    """Active rows whose refreshes are failing now, the soonest to be tried again first."""
    username = f"user__{get_user_model().USERNAME_FIELD}"
    rows = (
        OAuthToken.objects.using(_db.alias())
        .filter(status=OAuthToken.Status.ACTIVE, failure_count__gt=0)
        .order_by("next_refresh_at", "pk")
        .values_list(
            "pk", username, "failure_count", "last_error", "next_refresh_at", "expires_at"
        )[:limit]
    )
    return [
        FailingToken(
            token_id=pk,
            user=str(name),
            failures=failures,
            last_error=error,
            next_attempt=next_at,
            expires_at=expires_at,
        )
        for pk, name, failures, error, next_at, expires_at in rows
    ]


def _key_use(kid: str, primary: str, configured: tuple[str, ...]) -> KeyUse:
    if kid == primary:
        return KeyUse.PRIMARY
    return KeyUse.OLD if kid in configured else KeyUse.MISSING


def _key_id(prefix: str | None) -> str | None:
    if not prefix:
        return None
    return envelope_key_id(prefix) or "unknown"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
