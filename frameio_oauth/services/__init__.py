"""The public Python API of frameio_oauth, and the only package that locks token rows.

Views, tasks, admin actions and management commands are thin wrappers around these functions.
The refresh rule (one row, one refresh at a time, never an old refresh token twice) lives in
``_refresh.py``, with when a token is due in ``_schedule.py``, the due-row paging in
``_due.py``, the refresh scope in ``_scopes.py`` and the second save in ``_transaction.py``.
Storing and removing grants is in ``_grants.py``, ending them at the provider in
``_revocations.py``, key rotation in ``_keys.py``. Signals go out through ``_notify.py``, which
logs a receiver's exception instead of raising it.
"""

from __future__ import annotations

from ._due import due_token_ids
from ._grants import (
    connect_or_sign_in,
    disconnect,
    exchange_code,
    store_grant,
)
from ._keys import RotationSummary, count_key_ids, rotate_encryption_keys
from ._refresh import (
    REFRESHED_FIELDS,
    Outcome,
    RefreshSummary,
    get_access_token,
    refresh,
    refresh_due,
    refresh_if_due,
    refresh_with_outcome,
    replace_rejected_token,
)
from ._revocations import DisconnectResult, retry_due_revocations
from ._schedule import MAX_LEAD_FRACTION, needs_refresh, next_refresh_time

__all__ = [
    "MAX_LEAD_FRACTION",
    "REFRESHED_FIELDS",
    "DisconnectResult",
    "Outcome",
    "RefreshSummary",
    "RotationSummary",
    "connect_or_sign_in",
    "count_key_ids",
    "disconnect",
    "due_token_ids",
    "exchange_code",
    "get_access_token",
    "needs_refresh",
    "next_refresh_time",
    "refresh",
    "refresh_due",
    "refresh_if_due",
    "refresh_with_outcome",
    "replace_rejected_token",
    "retry_due_revocations",
    "rotate_encryption_keys",
    "store_grant",
]
