"""The public Python API of frameio_oauth, and the only package that locks token rows.

Views, tasks, admin actions and management commands are thin wrappers around these names;
nothing outside this package imports its private modules. docs/architecture.md maps them.
"""

from __future__ import annotations

from ._access import aget_access_token, get_access_token, loaded_user, replace_rejected_token
from ._db import LOCK_WAIT_SLACK, RECOVERY_BUDGET
from ._grants import (
    check_grant_values,
    connect_or_sign_in,
    disconnect,
    exchange_code,
    store_grant,
)
from ._keys import RotationSummary, count_key_ids, rotate_encryption_keys
from ._refresh import (
    Outcome,
    lock_hold,
    refresh,
    refresh_if_due,
    refresh_scope,
    refresh_with_outcome,
    worst_case_refresh_seconds,
)
from ._revocation import (
    MAX_REVOCATION_ATTEMPTS,
    DisconnectResult,
    retry_due_revocations,
    retry_revocations,
    revoke_after_user_deletion,
)
from ._schedule import (
    BACKOFF_CAP,
    MAX_LEAD_FRACTION,
    is_due,
    needs_refresh,
    next_refresh_time,
    refresh_lead,
    retry_delay,
)
from ._status import (
    Backlog,
    FailingToken,
    KeyCount,
    KeyUse,
    TokenStatus,
    backlog,
    failing_tokens,
    revocations_pending,
    token_status,
)
from ._sweep import RefreshSummary, due_token_ids, fan_out_due, refresh_due

__all__ = [
    "BACKOFF_CAP",
    "LOCK_WAIT_SLACK",
    "MAX_LEAD_FRACTION",
    "MAX_REVOCATION_ATTEMPTS",
    "RECOVERY_BUDGET",
    "Backlog",
    "DisconnectResult",
    "FailingToken",
    "KeyCount",
    "KeyUse",
    "Outcome",
    "RefreshSummary",
    "RotationSummary",
    "TokenStatus",
    "aget_access_token",
    "backlog",
    "check_grant_values",
    "connect_or_sign_in",
    "count_key_ids",
    "disconnect",
    "due_token_ids",
    "exchange_code",
    "failing_tokens",
    "fan_out_due",
    "get_access_token",
    "is_due",
    "loaded_user",
    "lock_hold",
    "needs_refresh",
    "next_refresh_time",
    "refresh",
    "refresh_due",
    "refresh_if_due",
    "refresh_lead",
    "refresh_scope",
    "refresh_with_outcome",
    "replace_rejected_token",
    "retry_delay",
    "retry_due_revocations",
    "retry_revocations",
    "revocations_pending",
    "revoke_after_user_deletion",
    "rotate_encryption_keys",
    "store_grant",
    "token_status",
    "worst_case_refresh_seconds",
]
