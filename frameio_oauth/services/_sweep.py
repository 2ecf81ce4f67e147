"""The sweep: refresh every due token, one claimed row at a time, and find due tokens for
a fanned-out sweep by keyset pages over the (status, next_refresh_at, id) index."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import BooleanField, Func, TextField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from .. import telemetry
from ..exceptions import ProviderUnavailable
from ..models import OAuthToken
from . import _db
from ._refresh import Outcome, RefreshResult, finish, refresh_locked
from ._revocation import retry_revocations

logger = logging.getLogger("frameio_oauth.services")


@dataclass
class RefreshSummary:
    refreshed: int = 0
    skipped: int = 0
    failed: int = 0
    reauth: int = 0
    # Disconnected grants whose deferred revocation went through in this sweep, or did not.
    revoked: int = 0
    revocations_failed: int = 0
    # Why the sweep stopped before the due rows ran out (the provider is down), if it did.
    stopped: str = ""

    def add(self, outcome: Outcome) -> None:
        if outcome is Outcome.REFRESHED:
            self.refreshed += 1
        elif outcome is Outcome.FAILED:
            self.failed += 1
        elif outcome is Outcome.REAUTH:
            self.reauth += 1
        else:
            self.skipped += 1

    @property
    def attempted(self) -> int:
        """Rows that cost a provider call (or a decryption) in this sweep."""
        return self.refreshed + self.failed + self.reauth

    def as_dict(self) -> dict[str, int]:
        return {
            "refreshed": self.refreshed,
            "skipped": self.skipped,
            "failed": self.failed,
            "reauth": self.reauth,
            "revoked": self.revoked,
            "revocations_failed": self.revocations_failed,
        }


def refresh_due(
    limit: int | None = None, *, progress: Callable[[int, Outcome], None] | None = None
) -> RefreshSummary:
    """The sweep: refresh every token due now, one claimed row at a time.

    Rows another worker holds are skipped without a wait, and rows that come due after the
    sweep started are left for the next one, so the loop always ends. Then the revocations
    whose retry time has come.
    """
    with telemetry.sweep_timer(telemetry.SweepKind.SWEEP) as sweep:
        summary = _sweep(limit, progress)
        sweep.rows = summary.attempted
    return summary


def _sweep(limit: int | None, progress: Callable[[int, Outcome], None] | None) -> RefreshSummary:
    summary = RefreshSummary()
    now = timezone.now()
    unavailable = 0
    while limit is None or summary.attempted < limit:
        claimed = _refresh_next_due(now)
        if claimed is None:
            break
        token_id, result = claimed
        summary.add(result.outcome)
        if progress is not None:
            progress(token_id, result.outcome)
        # An outage is the provider's, not the row's: the rest of the rows would only add
        # load (and HTTP_TIMEOUT each). They stay due for the next sweep.
        error = result.error
        unavailable = unavailable + 1 if isinstance(error, ProviderUnavailable) else 0
        if isinstance(error, ProviderUnavailable) and error.retry_after:
            summary.stopped = f"the provider asked to wait {error.retry_after:g} s"
        elif unavailable >= UNAVAILABLE_IN_A_ROW:
            summary.stopped = f"{unavailable} refreshes in a row found the provider unavailable"
        if summary.stopped:
            logger.warning("refresh sweep stopped early: %s", summary.stopped)
            break
    summary.revoked, summary.revocations_failed = retry_revocations(now)
    logger.info("refresh sweep done: %s", summary.as_dict())
    return summary


# After this many provider calls in a row find the provider down, a sweep stops.
UNAVAILABLE_IN_A_ROW = 3


def _refresh_next_due(now: datetime) -> tuple[int, RefreshResult] | None:
    """Claim the first row due at ``now`` that no other worker holds, and refresh it; None
    when none is left."""
    result: RefreshResult | None = None
    tx = _db.RefreshTransaction()
    with tx:
        token = _db.claim_due(now)
        if token is None:
            return None
        token_id = token.pk
        result = refresh_locked(token, tx)
    return token_id, finish(tx, result)


def fan_out_due(
    enqueue: Callable[[int, datetime | None], object],
    limit: int | None = None,
    *,
    ahead: float = 0.0,
) -> int:
    """A fanned-out sweep's tick: ``enqueue(token_id, eta)`` for every row due now (``eta``
    None) or within the next ``ahead`` seconds (``eta`` its due time), at most ``limit``; how
    many were enqueued. With ``ahead`` the beat interval, each row runs when it comes due,
    rather than all of a tick's rows at once on the tick (docs/operations.md)."""
    now = timezone.now()
    enqueued = 0
    with telemetry.sweep_timer(telemetry.SweepKind.FANOUT) as sweep:
        for token_id, due_text in _due_rows(now + timedelta(seconds=ahead), limit):
            due_at = _instant(due_text)
            enqueue(token_id, due_at if due_at > now else None)
            enqueued += 1
        sweep.rows = enqueued
    return enqueued


def due_token_ids(limit: int | None = None, *, batch_size: int = 500) -> Iterator[int]:
    """Due token ids in (next_refresh_at, id) order, by keyset pages of one index scan each."""
    for token_id, _ in _due_rows(timezone.now(), limit, batch_size=batch_size):
        yield token_id


def _due_rows(
    until: datetime, limit: int | None, *, batch_size: int = 500
) -> Iterator[tuple[int, str]]:
    """(id, next_refresh_at as text) of the rows due at ``until``, by keyset pages."""
    cursor: tuple[str, int] | None = None
    yielded = 0
    while limit is None or yielded < limit:
        page = OAuthToken.objects.due(until).order_by("next_refresh_at", "pk")
        if cursor is not None:
            # A row comparison: the index seeks straight to the cursor even when many rows
            # share one next_refresh_at, given back as text read exactly (_ExactText).
            page = page.filter(
                RawSQL('("next_refresh_at", "id") > (%s, %s)', cursor, output_field=BooleanField())
            )
        size = batch_size if limit is None else min(batch_size, limit - yielded)
        # The times as text: Django's conversion of 1,000 timestamps to datetimes was three
        # quarters of a page's time. next_refresh_at is never NULL here.
        rows: list[tuple[str, int]] = list(
            page.annotate(_at=_ExactText("next_refresh_at")).values_list("_at", "pk")[:size]
        )
        if not rows:
            return
        for at, token_id in rows:
            yield token_id, at
        yielded += len(rows)
        cursor = rows[-1]


def _instant(text: str) -> datetime:
    # PostgreSQL's is ISO 8601 with a Z (_ExactText); SQLite's, the UTC it stores, without one.
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _ExactText(Func):
    """A timestamp as text that the database reads back as exactly that instant."""

    template = "CAST(%(expressions)s AS text)"  # SQLite stores it as this very text
    output_field = TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # ISO 8601 in UTC, microseconds included: a plain ::text follows the session's
        # DateStyle and time zone, and "05/17/2024 ... IST" does not read back as it was.
        return self.as_sql(
            compiler,
            connection,
            template="to_char(%(expressions)s AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')',
            **extra,
        )
