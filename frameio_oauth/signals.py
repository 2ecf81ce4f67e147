"""Signals sent by frameio_oauth. Each is sent with ``sender=OAuthToken``.

Receivers run inside the request or task that caused them; keep them quick. What a signal
announces is committed before it is sent, so an exception a receiver raises is logged (logger
``frameio_oauth.services``, with its traceback), not raised: it never fails the refresh or
sign-in that sent the signal, nor stops a sweep, and the other receivers still run. No signal
carries a secret: read ``token.access_token`` yourself if you must.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.dispatch import Signal

logger = logging.getLogger("frameio_oauth.services")

# A grant was stored after a successful authorization-code exchange.
# kwargs: token (OAuthToken), user, created (bool: False when an existing row was replaced)
token_obtained = Signal()

# A refresh succeeded and was committed.
# kwargs: token (OAuthToken), rotated (bool: the provider issued a new refresh token)
token_refreshed = Signal()

# A refresh failed; the token is unchanged and the refresh is tried again at retry_at (backoff).
# error is a ProviderUnavailable for a transient failure (timeout, 5xx, 429, the Celery task's
# time limit); a ProviderError when the provider refused or sent something unusable (e.g.
# invalid_client: a configuration to fix), or something unexpected broke; a DecryptionError
# when no configured key opens the stored token (e.g. a key taken out of ENCRYPTION_KEYS).
# kwargs: token (OAuthToken), error (ProviderUnavailable | ProviderError | DecryptionError),
#         retry_at (datetime)
refresh_failed = Signal()

# The provider refused the refresh token (invalid_grant, revoked); status is now
# reauth_required and nothing will retry until the user signs in again.
# kwargs: token (OAuthToken), error (ReauthorizationRequired)
reauthorization_required = Signal()

# A grant was disconnected and its row deleted: revoked at the provider, unless the provider
# refused (revoked_at_provider False). Sent once per grant, when the row goes: if the
# revocation did not go through at disconnect time (an outage), the row waits (status revoked)
# and this is sent by the sweep that gets it through. Also sent when a user connects another
# Frame.io account: the old account's grant is revoked (one attempt) and the user's row holds
# the new grant, announced by token_obtained. And when a user is deleted: after the deletion
# commits and one revocation attempt (revoked_at_provider False if it failed; nothing is sent
# if the deletion rolls back); user is then the deleted instance, whose pk Django has cleared.
# Always after the commit that removed the row, also when that commit is a caller's.
# kwargs: user, provider_user_id (str), revoked_at_provider (bool)
token_revoked = Signal()


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
