"""Receivers for other apps' signals; connected once, from ``AppConfig.ready()``.

Deleting a user deletes their token row with them (``on_delete=CASCADE``), which on its own
would leave their grant live at Frame.io, with a refresh token good for weeks, that nothing
here could end any more. So before a user is deleted, their grant is revoked there, best
effort, through ``services.disconnect``.

Transactions: Django sends ``pre_delete`` inside the transaction that deletes the user (the
deletion collector always opens one), so the revocation runs there, before any row is gone,
with the token row locked; ``services.disconnect`` nests as a savepoint. That is the same
inside or outside ``transaction.atomic()`` and with ``ATOMIC_REQUESTS``. If the deletion is
rolled back afterwards, the grant is already revoked and the user keeps a dead one: their next
refresh fails with ``invalid_grant`` and they connect again. That is the safe way round: a
revocation deferred to ``on_commit`` would find the row, and the refresh token it needs, gone.

If Frame.io cannot be reached, the user is deleted anyway and the row goes with them: a warning
is logged (user id and error only) and the grant stays live at Frame.io until it expires.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models.signals import pre_delete

from . import services
from .exceptions import FrameioOAuthError, NotConnected

logger = logging.getLogger("frameio_oauth.receivers")


def revoke_grant_of_deleted_user(sender: Any, instance: AbstractBaseUser, **kwargs: Any) -> None:
    try:
        result = services.disconnect(instance)
    except NotConnected:
        return
    except FrameioOAuthError as exc:
        # Nothing may stop the user's deletion; their row goes with them either way.
        logger.warning(
            "could not revoke the Frame.io grant of deleted user %s: %s", instance.pk, exc
        )
        return
    if result.revoked_at_provider:
        logger.info("revoked the Frame.io grant of deleted user %s", instance.pk)
    elif result.pending:
        logger.warning(
            "Frame.io did not confirm the revocation of deleted user %s's grant, which stays "
            "live there until it expires: %s",
            instance.pk,
            result.error,
        )
    else:
        logger.info(
            "Frame.io refused to revoke deleted user %s's grant: %s", instance.pk, result.error
        )


def connect() -> None:
    pre_delete.connect(
        revoke_grant_of_deleted_user,
        sender=settings.AUTH_USER_MODEL,
        dispatch_uid="frameio_oauth.revoke_grant_of_deleted_user",
    )
