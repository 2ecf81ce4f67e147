"""Receivers for other apps' signals; connected once, from ``AppConfig.ready()``.

Deleting a user deletes their token row with them (``on_delete=CASCADE``), which on its own
would leave their grant live at Frame.io, with a refresh token good for weeks, that nothing
here could end any more. So their grant is revoked there, best effort, once the deletion has
committed (see ``services.revoke_after_user_deletion``).

Transactions: Django sends ``pre_delete`` inside the transaction that deletes the user. There
the token row is locked (a refresh in flight finishes first, so the refresh token read is the
current one) and its secrets read; the HTTP call waits for ``on_commit``, so it never runs
under a lock or inside a transaction (a bulk deletion would otherwise hold every row for N
provider calls, and a short ``idle_in_transaction_session_timeout`` would end the session).
If the deletion rolls back, nothing is revoked and the user keeps a working grant.

If Frame.io cannot be reached, the user is deleted all the same: a warning is logged (user id
and error only) and the grant stays live at Frame.io until it expires. ``token_revoked`` goes
out after the attempt; its ``user`` is the deleted instance, whose ``pk`` Django has cleared.

Connected without a sender, because Django sends ``pre_delete`` with the class being deleted,
which may be a proxy of the user model.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import pre_delete

from . import services


def revoke_grant_of_deleted_user(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    if isinstance(instance, get_user_model()):
        services.revoke_after_user_deletion(instance, using)


def connect() -> None:
    pre_delete.connect(
        revoke_grant_of_deleted_user,
        dispatch_uid="frameio_oauth.revoke_grant_of_deleted_user",
    )
