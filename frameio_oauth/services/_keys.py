"""Re-encrypting stored secrets under the first key of ENCRYPTION_KEYS."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from ..crypto import envelope_key_id, get_cipher
from ..exceptions import DecryptionError
from ..models import OAuthToken
from . import _db

SECRET_FIELDS = OAuthToken.SECRET_FIELDS
_CIPHERTEXT_COLUMNS = tuple(OAuthToken.ciphertext_column(name) for name in SECRET_FIELDS)


@dataclass
class RotationSummary:
    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    rewritten: int = 0
    # Rows left under an old key because they could not be decrypted.
    undecryptable: list[int] = field(default_factory=list)


def count_key_ids() -> Counter[str]:
    """How many stored secrets each key id protects."""
    counts: Counter[str] = Counter()
    # From the write database: a replica lagging behind a rotation would miscount.
    rows = (
        OAuthToken.objects.using(_db.alias())
        .values_list(*_CIPHERTEXT_COLUMNS)
        .iterator(chunk_size=2000)
    )
    for envelopes in rows:
        for envelope in envelopes:
            if envelope:
                counts[envelope_key_id(envelope) or "unknown"] += 1
    return counts


@sensitive_variables()
def rotate_encryption_keys(
    batch_size: int = 500, *, progress: Callable[[int, int], None] | None = None
) -> RotationSummary:
    """Re-encrypt every secret still under an old key with the first key, batch by batch."""
    primary = get_cipher().primary_kid
    summary = RotationSummary(before=count_key_ids())
    last_pk = 0
    done = 0
    while True:
        db = _db.alias()
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
            rekeyed = []
            for row in stale:
                try:
                    plaintexts = {name: getattr(row, name) for name in SECRET_FIELDS}
                except DecryptionError:
                    # Its key is gone from ENCRYPTION_KEYS (or the row was tampered with):
                    # leave it as it is for an operator, and go on with the others.
                    summary.undecryptable.append(row.pk)
                    continue
                for name, plaintext in plaintexts.items():
                    setattr(row, name, plaintext)
                rekeyed.append(row)
            OAuthToken.objects.using(db).bulk_update(rekeyed, list(SECRET_FIELDS))
        summary.rewritten += len(rekeyed)
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
