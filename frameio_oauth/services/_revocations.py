"""Ending a grant: revoke it at the provider (RFC 7009), then delete the row.

If the provider cannot be reached when a user disconnects, the row is not deleted: a deleted
row would leave a live grant at Frame.io (refresh tokens live for weeks) that nothing here
could end any more. It stays with status ``revoked`` instead, which every part of the app
treats as disconnected, and the sweep tries the revocation again with backoff, deleting the
row once the provider answers. A refusal that retrying cannot change (a 4xx, a key that can
no longer decrypt the token) deletes the row at once, as does running out of attempts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .. import provider, signals
from ..exceptions import FrameioOAuthError, ProviderUnavailable
from ..models import OAuthToken
from . import _rows
from ._backoff import retry_time

logger = logging.getLogger("frameio_oauth.services")

# With backoff capped at 30 minutes, about a day of provider outage.
MAX_REVOCATION_ATTEMPTS = 50


@dataclass(frozen=True)
class DisconnectResult:
    revoked_at_provider: bool
    error: str = ""
    # The provider could not be reached: the row stays, disconnected, until a later sweep
    # gets the revocation through.
    pending: bool = False


def end_grant(token: OAuthToken, now: datetime) -> DisconnectResult:
    """Revoke ``token``'s grant and delete the row, or keep it as ``revoked`` for a retry.

    The caller holds the row lock, in a transaction on ``_rows.alias()``.
    """
    try:
        provider.revoke_grant(refresh_token=token.refresh_token, access_token=token.access_token)
    except ProviderUnavailable as exc:
        if token.failure_count + 1 < MAX_REVOCATION_ATTEMPTS:
            token.status = OAuthToken.Status.REVOKED
            token.failure_count += 1
            token.next_refresh_at = retry_time(now, token.failure_count, exc.retry_after)
            token.last_error = f"revocation: {exc}"[:255]
            _rows.save_fields(
                token, ["status", "failure_count", "next_refresh_at", "last_error", "updated_at"]
            )
            logger.warning(
                "revocation for user %s failed, retry at %s: %s",
                token.user_id,
                token.next_refresh_at,
                exc,
            )
            return DisconnectResult(revoked_at_provider=False, error=str(exc), pending=True)
        logger.error(
            "giving up revoking the grant of user %s after %s attempts: %s",
            token.user_id,
            token.failure_count + 1,
            exc,
        )
        result = DisconnectResult(revoked_at_provider=False, error=str(exc))
    except FrameioOAuthError as exc:
        logger.warning("revocation for user %s failed: %s", token.user_id, exc)
        result = DisconnectResult(revoked_at_provider=False, error=str(exc))
    else:
        result = DisconnectResult(revoked_at_provider=True)
    token.delete()
    return result


def announce_removal(token: OAuthToken, result: DisconnectResult) -> None:
    """``token_revoked``, once per grant: when its row is deleted, after the commit."""
    signals.token_revoked.send(
        sender=OAuthToken,
        user=token.user,
        provider_user_id=token.provider_user_id,
        revoked_at_provider=result.revoked_at_provider,
    )


def retry_due_revocations(now: datetime | None = None) -> int:
    """Try again every revocation whose retry time has come, one claimed row at a time (part
    of every sweep). Returns how many rows were removed."""
    now = now or timezone.now()
    waiting = OAuthToken.objects.using(_rows.alias()).filter(
        status=OAuthToken.Status.REVOKED, next_refresh_at__lte=now
    )
    # Nearly always none: one plain query then, not a transaction, on every sweep.
    if not waiting.exists():
        return 0
    removed = 0
    while True:
        with transaction.atomic(using=_rows.alias()):
            token = waiting.select_for_update(skip_locked=True).order_by("next_refresh_at").first()
            if token is None:
                return removed
            result = end_grant(token, now)
        if not result.pending:
            removed += 1
            announce_removal(token, result)


def retire_pending(tokens: list[OAuthToken]) -> list[tuple[OAuthToken, DisconnectResult]]:
    """Before a new grant takes the place of rows still waiting for their revocation: one
    more attempt each, then the rows go, whatever the provider says. Under the row locks;
    returns what to announce after the commit."""
    retired = []
    for token in tokens:
        try:
            provider.revoke_grant(
                refresh_token=token.refresh_token, access_token=token.access_token
            )
        except FrameioOAuthError as exc:
            logger.warning(
                "a grant of user %s was replaced before its revocation went through: %s",
                token.user_id,
                exc,
            )
            result = DisconnectResult(revoked_at_provider=False, error=str(exc))
        else:
            result = DisconnectResult(revoked_at_provider=True)
        token.delete()
        retired.append((token, result))
    return retired
