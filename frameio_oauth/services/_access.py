"""Handing out access tokens: the fresh one in one query, or the one a locked refresh of a
due row gives (sync and async callers alike), and the replacement of one the API rejected."""

from __future__ import annotations

from datetime import datetime

from asgiref.sync import sync_to_async
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone
from django.utils.functional import SimpleLazyObject, empty
from django.views.decorators.debug import sensitive_variables

from ..exceptions import (
    NotConnected,
    ProviderError,
    ProviderUnavailable,
    ReauthorizationRequired,
    RefreshInsideTransaction,
)
from ..models import OAuthToken
from ._refresh import attempt_on_demand, on_demand
from ._schedule import is_due


def get_access_token(user: AbstractBaseUser) -> str:
    """A usable access token for ``user``: one query when fresh, a locked refresh when due.

    While a failed refresh backs off, the current token is handed out until it expires.
    """
    token = OAuthToken.objects.filter(user_id=user.pk).first()
    fresh = _fresh_access_token(user, token)
    if fresh is not None:
        return fresh
    assert token is not None
    return _refreshed_access_token(token)


async def aget_access_token(user: AbstractBaseUser) -> str:
    """:func:`get_access_token` for async code: one async query when fresh; when due, the
    same locked refresh, run in a worker thread so the event loop never waits on it. Pass a
    loaded user (``await request.auser()``), not the lazy ``request.user``."""
    token = await OAuthToken.objects.filter(user_id=loaded_user(user).pk).afirst()
    fresh = _fresh_access_token(user, token)
    if fresh is not None:
        return fresh
    assert token is not None
    # Thread-sensitive, as Django's own async ORM: the thread's connection is closed with
    # the request's (request_finished), not left open in a pool thread.
    return await sync_to_async(_refreshed_access_token)(token)


def loaded_user(user: AbstractBaseUser) -> AbstractBaseUser:
    """``user``, unless it is a lazy user not loaded yet (``request.user`` in an async view),
    which async code cannot load: a clear error then, instead of SynchronousOnlyOperation."""
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        raise TypeError(
            "pass a loaded user to async code: `await request.auser()`, not `request.user`"
        )
    return user


def _fresh_access_token(user: AbstractBaseUser, token: OAuthToken | None) -> str | None:
    """The row's access token if it needs no refresh; None if it is due (or of another
    server, which the locked way marks). Raises if there is nothing to hand out."""
    if token is None or token.status == OAuthToken.Status.REVOKED:
        raise NotConnected(f"user {user.pk} has not connected Frame.io")
    if token.status != OAuthToken.Status.ACTIVE:
        raise ReauthorizationRequired(f"user {user.pk} must sign in with Frame.io again")
    now = timezone.now()
    if token.issued_elsewhere() or is_due(token, now):
        return None
    return _unexpired(token, now)


def _refreshed_access_token(token: OAuthToken) -> str:
    """The access token after a locked refresh of a due row (or the current one, while it
    lives, if the refresh cannot be made now)."""
    now = timezone.now()
    foreign = token.issued_elsewhere()
    try:
        refreshed = attempt_on_demand(token.pk).token
    except (RefreshInsideTransaction, ProviderUnavailable, ProviderError) as exc:
        if foreign:
            # Not marked (it could not be locked here): the sweep will mark it.
            raise ReauthorizationRequired(token.issued_elsewhere_message()) from exc
        # The old access token may still have minutes to live (and the sweep will refresh it
        # outside the caller's transaction): use it rather than fail.
        if not token.is_expired(now):
            return str(token.access_token)
        raise
    assert refreshed is not None
    # Not due after all: another caller's refresh just failed, and its backoff holds.
    return _unexpired(refreshed, timezone.now())


def _unexpired(token: OAuthToken, now: datetime) -> str:
    """The token's access token, unless it has expired while its refresh backs off."""
    if token.is_expired(now):
        waiting = ProviderUnavailable(
            f"the refresh of token {token.pk} failed and is tried again at {token.next_refresh_at}"
        )
        waiting.retry_at = token.next_refresh_at
        raise waiting
    return str(token.access_token)


@sensitive_variables()
def replace_rejected_token(user: AbstractBaseUser, rejected: str) -> str:
    """A new access token after the API answered 401 to ``rejected``.

    Refreshes only if ``rejected`` is still the stored token; if another thread or process
    already replaced it, returns the replacement without a second provider call.
    """
    token_id = OAuthToken.objects.filter(user_id=user.pk).values_list("pk", flat=True).first()
    if token_id is None:
        raise NotConnected(f"user {user.pk} has not connected Frame.io")
    return str(on_demand(token_id, rejected=rejected).access_token)
