"""Signals sent by frameio_oauth, and the one helper that sends them.

A receiver that raises is logged, not raised: what it announces is already committed, and
the refresh, sign-in or sweep that sent it goes on. No signal carries a secret.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.dispatch import Signal

logger = logging.getLogger("frameio_oauth.services")

# Each is sent with sender=OAuthToken after the commit of what it announces; the arguments
# and when each goes out are in docs/signals.md.
token_obtained = Signal()  # token, user, created
token_refreshed = Signal()  # token, rotated
refresh_failed = Signal()  # token, error, retry_at
reauthorization_required = Signal()  # token, error
token_revoked = Signal()  # user, provider_user_id, revoked_at_provider


def announce(signal: Signal, **kwargs: Any) -> None:
    """Send ``signal`` with ``sender=OAuthToken``; a receiver that raises is logged with its
    traceback, never raised (what it announces is committed already)."""
    sender = apps.get_model("frameio_oauth", "OAuthToken")
    for receiver, outcome in signal.send_robust(sender=sender, **kwargs):
        if isinstance(outcome, Exception):
            logger.error(
                "a receiver of frameio_oauth's %s signal (%s) raised; what it announces stands",
                _name(signal),
                getattr(receiver, "__qualname__", type(receiver).__qualname__),
                exc_info=outcome,
            )


def _name(signal: Signal) -> str:
    return next((name for name, value in globals().items() if value is signal), "unknown signal")
