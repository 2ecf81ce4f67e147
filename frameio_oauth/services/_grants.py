"""Storing and removing grants: sign-in, connect, disconnect."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, router, transaction
from django.db.models import Q
from django.utils import timezone

from .. import provider, signals
from ..conf import conf
from ..exceptions import FrameioOAuthError, GrantRefused, NotConnected, UnusableProviderValue
from ..models import OAuthToken
from . import _accounts, _db, _revocation
from ._revocation import DisconnectResult
from ._schedule import apply_tokens

logger = logging.getLogger("frameio_oauth.services")


def exchange_code(
    code: str, *, redirect_uri: str, code_verifier: str | None
) -> tuple[provider.TokenResponse, provider.UserInfo]:
    """Trade a code for tokens and learn whose they are. Stores nothing."""
    tokens = provider.exchange_code(code, redirect_uri=redirect_uri, code_verifier=code_verifier)
    try:
        info = provider.fetch_userinfo(tokens.access_token)
    except FrameioOAuthError:
        # Whose grant it is stays unknown: give it back only while no live grant is stored at
        # all, or a per-user revocation could end one (docs/security.md, "Giving grants back").
        if _no_live_grant_stored():
            _give_back(tokens)
        else:
            logger.info(
                "a grant whose user info could not be fetched is left to expire at Frame.io: "
                "revoking it might end a live grant of the same account stored here"
            )
        raise
    try:
        check_grant_values(tokens, info)
    except UnusableProviderValue:
        _give_back_unless_held(tokens, info.id)
        raise
    return tokens, _without_unusable_email(info)


def _without_unusable_email(info: provider.UserInfo) -> provider.UserInfo:
    # The e-mail is optional and only shown: one that does not fit is dropped, not fatal.
    if not info.email or OAuthToken.fits("provider_email", info.email):
        return info
    logger.warning("the e-mail address Frame.io sent cannot be stored; keeping none")
    return dataclasses.replace(info, email="")


def check_grant_values(tokens: provider.TokenResponse, info: provider.UserInfo) -> None:
    """Raise :class:`UnusableProviderValue` unless everything a new grant stores about the
    provider's answer fits its column as sent: nothing is cut short, nothing fails to save."""
    OAuthToken.check_provider_value("provider_user_id", info.id)
    if tokens.refresh_token_unusable:
        raise UnusableProviderValue("refresh_token", "it is not printable ASCII (RFC 6749)")
    OAuthToken.check_provider_value("token_type", tokens.token_type)
    if tokens.scope is not None:
        OAuthToken.check_provider_value("scope", tokens.scope)


def _give_back_unless_held(tokens: provider.TokenResponse, identity: str) -> None:
    """Give back a grant nothing here will hold, unless its Frame.io account holds a live
    grant here (see exchange_code); an id that cannot be stored is held by nobody."""
    if not _usable_id(identity) or _no_live_grant_stored(identity):
        _give_back(tokens)


def _usable_id(identity: str) -> bool:
    return OAuthToken.fits("provider_user_id", identity)


def _no_live_grant_stored(identity: str | None = None) -> bool:
    live = OAuthToken.objects.using(_db.alias()).filter(status=OAuthToken.Status.ACTIVE)
    if identity is not None:
        live = live.filter(provider_user_id=identity)
    return not live.exists()


def connect_or_sign_in(
    current_user: AbstractBaseUser | None,
    tokens: provider.TokenResponse,
    info: provider.UserInfo,
) -> AbstractBaseUser:
    """Store a new grant: for the signed-in user (connect), or for the user the Frame.io
    identity is linked to, or a new user if sign-up is allowed. One transaction, so a refused
    grant never leaves a new account behind. Returns the user the grant belongs to."""
    try:
        with _transactions_for_grant():
            user = current_user if current_user is not None else _accounts.user_for_identity(info)
            store_grant(user, tokens, info)
    except GrantRefused as exc:
        if exc.reason is GrantRefused.Reason.NO_ACCOUNT:
            # Nobody here holds this identity's grant, so giving this one back cuts nothing.
            _give_back(tokens)
        raise
    except UnusableProviderValue:
        _give_back_unless_held(tokens, info.id)
        raise
    return user


@contextmanager
def _transactions_for_grant() -> Iterator[None]:
    """One transaction on the tokens' database and, if routers put users elsewhere, one on
    theirs too, so a refused grant cannot leave a new account behind on either."""
    tokens_db = _db.alias()
    users_db = router.db_for_write(get_user_model())
    with transaction.atomic(using=tokens_db):
        if users_db == tokens_db:
            yield
        else:
            with transaction.atomic(using=users_db):
                yield


def _give_back(tokens: provider.TokenResponse) -> None:
    try:
        provider.revoke_grant(refresh_token=tokens.refresh_token, access_token=tokens.access_token)
    except FrameioOAuthError as exc:
        logger.info("could not revoke a refused grant: %s", exc)


def store_grant(
    user: AbstractBaseUser, tokens: provider.TokenResponse, info: provider.UserInfo
) -> OAuthToken:
    """Attach a freshly obtained grant to ``user``, replacing any grant the user had; one of
    another Frame.io account is revoked at the provider after the commit."""
    check_grant_values(tokens, info)
    tokens_db = OAuthToken.objects.using(_db.alias())
    with transaction.atomic(using=tokens_db.db):
        # Every row this grant could collide with, locked in one statement in id order (no
        # deadlock between two callbacks) and read only once locked.
        rows = list(
            tokens_db.select_for_update()
            .filter(Q(user_id=user.pk) | Q(provider_user_id=info.id))
            .order_by("pk")
        )
        pending = [row for row in rows if row.status == OAuthToken.Status.REVOKED]
        for retired, result in _revocation.retire_pending(pending, new_identity=info.id):
            transaction.on_commit(
                partial(_revocation.announce_removal, retired, result), using=tokens_db.db
            )
        live = [row for row in rows if row.status != OAuthToken.Status.REVOKED]
        holder = next((row for row in live if row.provider_user_id == info.id), None)
        if holder is not None and holder.user_id != user.pk:
            raise GrantRefused(
                GrantRefused.Reason.LINKED_ELSEWHERE,
                f"this Frame.io account is connected to user {holder.user_id}",
            )
        token = next((row for row in live if row.user_id == user.pk), None)
        created = token is None
        replaced = None
        if token is None:
            token = OAuthToken(user_id=user.pk)
        elif token.provider_user_id != info.id:
            # Another Frame.io account: its old grant is revoked once this one is committed.
            # (Not for the same account: a per-user revocation would cut the new grant too.)
            replaced = _revocation.snapshot(token)
        token.provider = conf.provider_name
        token.authorization_server = conf.authorization_server
        token.provider_user_id = info.id
        token.provider_email = _without_unusable_email(info).email
        token.status = OAuthToken.Status.ACTIVE
        token.failure_count = 0
        token.last_error = ""
        apply_tokens(token, tokens, keep_refresh_token=False, issued_at=timezone.now())
        if tokens.scope is None:
            # RFC 6749 §5.1: no scope in the answer means the scope asked for was granted.
            token.scope = conf.scope_string
        try:
            token.save()
        except IntegrityError as exc:
            # Two first connects raced (no row existed to lock); the other one won.
            raise GrantRefused(
                GrantRefused.Reason.BUSY, "a concurrent sign-in of this account stored it first"
            ) from exc
    logger.info("stored a Frame.io grant for user %s", user.pk)
    # After the outermost commit: a receiver finds the row and cannot roll back the grant.
    transaction.on_commit(
        lambda: signals.announce(signals.token_obtained, token=token, user=user, created=created),
        using=tokens_db.db,
    )
    if replaced is not None:
        # Robust, after token_obtained: the old grant may not break the new one's callback.
        # A lambda: Django logs a robust callback's failure by its __qualname__.
        transaction.on_commit(
            lambda: _revocation.end_replaced_grant(replaced, user),
            using=tokens_db.db,
            robust=True,
        )
    return token


def disconnect(user: AbstractBaseUser) -> DisconnectResult:
    """Revoke the grant at the provider (RFC 7009), then delete the local row.

    If the revocation does not go through (an outage, or an error an operator can fix), the
    row stays with status ``revoked`` (disconnected for every purpose here) until a later
    sweep gets it through: deleting it would leave a live grant at Frame.io that nothing
    could end. The result says which (see ``_revocation``).
    """
    tokens_db = OAuthToken.objects.using(_db.alias())
    with transaction.atomic(using=tokens_db.db):
        # The revocation's HTTP call runs under this lock (inside the admin's transaction,
        # too): the same idle-in-transaction guard as a refresh's provider call.
        token = _db.lock_users_row(user.pk)
        if token is None:
            raise NotConnected(f"user {user.pk} has not connected Frame.io")
        result = _revocation.end_grant(token)
    if not result.pending:
        # After the row is gone for good: inside a caller's transaction (the admin's delete
        # view), only once that commits, and never if it rolls back. Outside one, at once.
        transaction.on_commit(
            lambda: _revocation.announce_removal(token, result, user),
            using=tokens_db.db,
            robust=True,
        )
    return result
