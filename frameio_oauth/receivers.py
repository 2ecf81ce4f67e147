"""Receivers for other apps' signals, connected from ``AppConfig.ready()``: deleting a user
revokes their grant at Frame.io once the deletion commits (docs/security.md, "Deleting a
user"); connected without a sender, since Django sends ``pre_delete`` for proxy models too."""

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
