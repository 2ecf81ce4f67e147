"""Finding due tokens: keyset pages over the (status, next_refresh_at, id) index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import BooleanField, Func, TextField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ..models import OAuthToken


def due_token_ids(limit: int | None = None, *, batch_size: int = 500) -> Iterator[int]:
    """Due token ids in (next_refresh_at, id) order, by keyset pages of one index scan each."""
    now = timezone.now()
    cursor: tuple[str, int] | None = None
    yielded = 0
    while limit is None or yielded < limit:
        page = OAuthToken.objects.due(now).order_by("next_refresh_at", "pk")
        if cursor is not None:
            # A row comparison, so the index (status, next_refresh_at, id) seeks straight to
            # the cursor even when many rows share one next_refresh_at. The time goes back
            # as text the database reads back exactly (see _ExactText).
            page = page.filter(
                RawSQL('("next_refresh_at", "id") > (%s, %s)', cursor, output_field=BooleanField())
            )
        size = batch_size if limit is None else min(batch_size, limit - yielded)
        # The times as text: only the last one is used, and turning 1,000 timestamps into
        # datetimes was three quarters of a page's time. next_refresh_at is never NULL here.
        rows: list[tuple[str, int]] = list(
            page.annotate(_at=_ExactText("next_refresh_at")).values_list("_at", "pk")[:size]
        )
        if not rows:
            return
        for _, token_id in rows:
            yield token_id
        yielded += len(rows)
        cursor = rows[-1]


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
