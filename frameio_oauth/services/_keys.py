"""Re-encrypting stored secrets under the first key of ENCRYPTION_KEYS."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction

from ..crypto import envelope_key_id, get_cipher
from ..models import OAuthToken
from . import _rows
from ._refresh import SECRET_FIELDS

_CIPHERTEXT_COLUMNS = tuple(f"{name}_ciphertext" for name in SECRET_FIELDS)


@dataclass
class RotationSummary:
    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    rewritten: int = 0


def count_key_ids() -> Counter[str]:
    """How many stored secrets each key id protects."""
    counts: Counter[str] = Counter()
    # From the write database: a replica lagging behind a rotation would miscount.
    rows = (
        OAuthToken.objects.using(_rows.alias())
        .values_list(*_CIPHERTEXT_COLUMNS)
        .iterator(chunk_size=2000)
    )
    for envelopes in rows:
        for envelope in envelopes:
            if envelope:
                counts[envelope_key_id(envelope) or "unknown"] += 1
    return counts


def rotate_encryption_keys(
    batch_size: int = 500, *, progress: Callable[[int, int], None] | None = None
) -> RotationSummary:
    """Re-encrypt every secret still under an old key with the first key, batch by batch."""
    primary = get_cipher().primary_kid
    summary = RotationSummary(before=count_key_ids())
    last_pk = 0
    done = 0
    while True:
        db = _rows.alias()
        with transaction.atomic(using=db):
            batch = list(
                OAuthToken.objects.using(db)
                .select_for_update()
                .filter(pk__gt=last_pk)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                break
            stale = [row for row in batch if _needs_rekey(row, primary)]
            for row in stale:
                for name in SECRET_FIELDS:
                    setattr(row, name, getattr(row, name))
            OAuthToken.objects.using(db).bulk_update(stale, list(SECRET_FIELDS))
        summary.rewritten += len(stale)
        done += len(batch)
        last_pk = batch[-1].pk
        if progress is not None:
            progress(done, summary.rewritten)
    summary.after = count_key_ids()
    return summary


def _needs_rekey(row: OAuthToken, primary: str) -> bool:
    return any(
        (envelope := row.__dict__.get(column)) and envelope_key_id(envelope) != primary
        for column in _CIPHERTEXT_COLUMNS
    )
