"""Ending a grant: revoke it at the provider (RFC 7009), then delete the row. A revocation that
does not go through keeps the row as ``revoked`` (disconnected) for the sweep to retry, since a
deleted row would leave a live grant nothing could end (docs/security.md, "Disconnecting")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import provider, signals
from ..conf import conf
from ..exceptions import (
    DecryptionError,
    FrameioOAuthError,
    ProviderError,
    ReauthorizationRequired,
)
from ..models import OAuthToken
from . import _db
from ._schedule import retry_time

logger = logging.getLogger("frameio_oauth.services")

# With backoff capped at 30 minutes, about a day of provider outage.
MAX_REVOCATION_ATTEMPTS = 50


@dataclass(frozen=True)
class DisconnectResult:
    revoked_at_provider: bool
    error: str = ""
    # The provider did not confirm (an outage, or an error an operator can fix): the row
    # stays, disconnected, until a later sweep gets the revocation through.
    pending: bool = False
    # Another authorization server than the configured one issued the grant: the row was
    # removed here with no call to either server (``error`` says which); the user can end
    # the grant in their account at that server.
    issued_elsewhere: bool = False


def _not_sent(why: str) -> DisconnectResult:
    return DisconnectResult(revoked_at_provider=False, error=why, issued_elsewhere=True)


def end_grant(token: OAuthToken) -> DisconnectResult:
    """Revoke ``token``'s grant and delete the row, or keep it as ``revoked`` for a retry.

    The caller holds the row lock, in a transaction on ``_db.alias()``. A grant of another
    authorization server is deleted without a call: its tokens never go to the configured one.
    """
    if token.issued_elsewhere():
        why = token.issued_elsewhere_message()
        logger.warning(
            "the grant of user %s was removed here without revoking it: %s", token.user_id, why
        )
        token.delete()
        return _not_sent(why)
    error = _revoke(token)
    if error is None:
        result = DisconnectResult(revoked_at_provider=True)
    elif _no_retry_can_help(error):
        logger.warning("revocation for user %s refused: %s", token.user_id, error)
        result = DisconnectResult(revoked_at_provider=False, error=str(error))
    else:
        # An outage, or an operator's mistake to fix (a missing key, a wrong secret): retry
        # later; refresh failures from before the disconnect do not count.
        pending = token.status == OAuthToken.Status.REVOKED
        attempts = token.failure_count + 1 if pending else 1
        if attempts < MAX_REVOCATION_ATTEMPTS:
            _keep_for_retry(token, error, attempts)
            return DisconnectResult(revoked_at_provider=False, error=str(error), pending=True)
        logger.error(
            "giving up revoking the grant of user %s after %s attempts: %s",
            token.user_id,
            attempts,
            error,
        )
        result = DisconnectResult(revoked_at_provider=False, error=str(error))
    token.delete()
    return result


@sensitive_variables()
def _revoke(token: OAuthToken) -> FrameioOAuthError | None:
    """Revoke the token's grant at the provider; the error if that did not go through."""
    try:
        refresh_token, access_token = token.refresh_token, token.access_token
    except DecryptionError as exc:
        return exc
    return _revoke_tokens(refresh_token, access_token)


@dataclass(frozen=True, repr=False)
class GrantSnapshot:
    """A grant's identity and secrets, read under its row lock before the row is overwritten
    or deleted (a new grant of another account, a deleted user), to revoke after the commit."""

    provider_user_id: str
    # The server that issued it, the only one it may be revoked at.
    authorization_server: str
    refresh_token: str | None
    access_token: str | None
    # Why the secrets could not be read (access_token is None then).
    error: str = ""


@sensitive_variables()
def snapshot(token: OAuthToken) -> GrantSnapshot:
    """What revoking ``token``'s grant later needs, read now."""
    identity = (token.provider_user_id, token.authorization_server)
    try:
        return GrantSnapshot(*identity, token.refresh_token, token.access_token)
    except DecryptionError as exc:
        return GrantSnapshot(*identity, None, None, error=str(exc))


@sensitive_variables()
def end_replaced_grant(replaced: GrantSnapshot, user: AbstractBaseUser) -> None:
    """Revoke a grant the user replaced by connecting another Frame.io account: one attempt,
    after the new grant is committed and outside its locks (an HTTP call under them would
    hold up the new grant's first refresh). If it does not go through, the grant is left to
    expire at the provider, as when a pending revocation is replaced (see retire_pending):
    the user's row holds the new grant now. Then ``token_revoked``, as for any ended grant."""
    _end_snapshot(
        replaced, user, user.pk, "the grant of user %s that another Frame.io account replaced"
    )


def revoke_after_user_deletion(user: AbstractBaseUser, using: str) -> None:
    """Arrange for the grant of ``user``, who is being deleted in a transaction on ``using``,
    to be revoked at the provider once that deletion commits: one attempt, outside every lock
    and transaction, and never if the deletion rolls back. Then ``token_revoked``.

    Called from ``pre_delete``: the row is locked here, in the deletion's transaction (which
    deletes it by cascade), so a refresh in flight finishes first and the refresh token read
    is the current one; after the commit the row, and the token, would be gone.
    """
    with transaction.atomic(using=using, savepoint=False):
        token = OAuthToken.objects.using(using).select_for_update().filter(user_id=user.pk).first()
    if token is None:
        return
    grant = snapshot(token)
    user_id = user.pk  # Django sets the deleted instance's pk to None.
    # A lambda, not a partial: Django logs a robust callback's failure by __qualname__.
    transaction.on_commit(
        lambda: _end_snapshot(grant, user, user_id, "the grant of deleted user %s"),
        using=using,
        robust=True,
    )


@sensitive_variables()
def _end_snapshot(
    grant: GrantSnapshot, user: AbstractBaseUser, user_id: object, whose: str
) -> None:
    """One revocation attempt for a grant read under its row lock, logged (WARNING if it did
    not go through, unless retrying could not help), then ``token_revoked``. A grant of
    another authorization server than the configured one is not sent anywhere."""
    if grant.authorization_server != conf.authorization_server:
        logger.info(
            "%s is not revoked: it was issued by %s, and this site now uses %s",
            whose % user_id,
            grant.authorization_server,
            conf.authorization_server,
        )
        result = _not_sent(f"issued by {grant.authorization_server}")
    else:
        result = _revoke_snapshot(grant, whose % user_id)
    signals.announce(
        signals.token_revoked,
        user=user,
        provider_user_id=grant.provider_user_id,
        revoked_at_provider=result.revoked_at_provider,
    )


@sensitive_variables()
def _revoke_snapshot(grant: GrantSnapshot, whose: str) -> DisconnectResult:
    if grant.access_token is None:
        error: FrameioOAuthError | None = DecryptionError(grant.error)
    else:
        error = _revoke_tokens(grant.refresh_token, grant.access_token)
    if error is None:
        logger.info("revoked %s at Frame.io", whose)
        return DisconnectResult(revoked_at_provider=True)
    log = logger.info if _no_retry_can_help(error) else logger.warning
    log("%s could not be revoked: %s", whose, error)
    return DisconnectResult(revoked_at_provider=False, error=str(error))


@sensitive_variables("refresh_token", "access_token")
def _revoke_tokens(refresh_token: str | None, access_token: str) -> FrameioOAuthError | None:
    """Revoke a grant by its tokens; the error if that did not go through."""
    try:
        provider.revoke_grant(refresh_token=refresh_token, access_token=access_token)
    except FrameioOAuthError as exc:
        return exc
    return None


def _no_retry_can_help(error: FrameioOAuthError) -> bool:
    # invalid_grant: nothing live there any more. unsupported_token_type (RFC 7009): this
    # server cannot revoke such tokens at all.
    return isinstance(error, ReauthorizationRequired) or (
        isinstance(error, ProviderError) and error.code == "unsupported_token_type"
    )


def _keep_for_retry(token: OAuthToken, error: FrameioOAuthError, attempts: int) -> None:
    # From the moment of the failure, not from the start of the sweep that found the row.
    retry_at = retry_time(timezone.now(), attempts, getattr(error, "retry_after", None))
    _db.save_fields(token, token.mark_revocation_pending(error, attempts, retry_at))
    logger.warning("revocation for user %s failed, retry at %s: %s", token.user_id, retry_at, error)


def announce_removal(
    token: OAuthToken, result: DisconnectResult, user: AbstractBaseUser | None = None
) -> None:
    """``token_revoked``, once per grant: when its row is deleted, after the commit."""
    signals.announce(
        signals.token_revoked,
        user=user if user is not None else token.user,
        provider_user_id=token.provider_user_id,
        revoked_at_provider=result.revoked_at_provider,
    )


def retry_due_revocations(now: datetime | None = None) -> int:
    """Try again every revocation whose retry time has come, one claimed row at a time (part
    of every sweep). Returns how many rows were removed."""
    return retry_revocations(now)[0]


def retry_revocations(now: datetime | None = None) -> tuple[int, int]:
    """:func:`retry_due_revocations`, also counting the revocations that failed again."""
    now = now or timezone.now()
    waiting = OAuthToken.objects.using(_db.alias()).filter(
        status=OAuthToken.Status.REVOKED, next_refresh_at__lte=now
    )
    # Nearly always none: one plain query then, not a transaction, on every sweep.
    if not waiting.exists():
        return 0, 0
    removed = failed = 0
    while True:
        with transaction.atomic(using=_db.alias()):
            token = waiting.select_for_update(skip_locked=True).order_by("next_refresh_at").first()
            if token is None:
                return removed, failed
            result = end_grant(token)
        if result.pending:
            failed += 1
        else:
            removed += 1
            announce_removal(token, result)


def retire_pending(
    tokens: list[OAuthToken], *, new_identity: str
) -> list[tuple[OAuthToken, DisconnectResult]]:
    """Rows still waiting for their revocation make way for a new grant; under their locks.
    Returns what to announce after the commit.

    A pending grant of another Frame.io identity gets one more revocation attempt. One of the
    identity that was just granted again is not revoked: a provider that revokes every grant
    of a user and client at once would cut the new grant with it, and the old one gives this
    client nothing the new one does not.
    """
    retired = []
    for token in tokens:
        if token.provider_user_id == new_identity:
            logger.info(
                "a pending revocation for user %s was superseded by a new grant of the same "
                "Frame.io account",
                token.user_id,
            )
            result = DisconnectResult(revoked_at_provider=False, error="superseded")
        elif token.issued_elsewhere():
            logger.info(
                "a pending revocation for user %s was dropped: %s",
                token.user_id,
                token.issued_elsewhere_message(),
            )
            result = _not_sent(token.issued_elsewhere_message())
        elif (error := _revoke(token)) is not None:
            logger.warning(
                "a grant of user %s was replaced before its revocation went through: %s",
                token.user_id,
                error,
            )
            result = DisconnectResult(revoked_at_provider=False, error=str(error))
        else:
            result = DisconnectResult(revoked_at_provider=True)
        token.delete()
        retired.append((token, result))
    return retired
