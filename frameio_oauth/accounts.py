"""Which local user a Frame.io identity belongs to. Linked by the provider's user id, never by
e-mail alone: an e-mail address at Frame.io proves nothing about an account here."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.translation import gettext as _

from .conf import conf
from .exceptions import CallbackError
from .models import OAuthToken
from .provider import UserInfo


def user_for_identity(info: UserInfo) -> AbstractBaseUser:
    """The user linked to ``info.id``; else a new user if ALLOW_SIGNUP; else CallbackError."""
    linked = (
        OAuthToken.objects.select_related("user")
        .filter(provider_user_id=info.id)
        .exclude(status=OAuthToken.Status.REVOKED)  # disconnected, revocation pending
        .first()
    )
    if linked is not None:
        if not linked.user.is_active:
            raise CallbackError("inactive", _("This account is disabled."), status=403)
        return linked.user
    if not conf.allow_signup:
        raise CallbackError(
            "no_account",
            _("No account here is connected to this Frame.io user. Sign in first, then connect."),
            status=403,
        )
    user_model = get_user_model()
    user = user_model(**{user_model.USERNAME_FIELD: _free_username(info)})
    if info.email and hasattr(user, "email"):
        user.email = info.email
    user.set_unusable_password()
    user.save()
    return user


def _free_username(info: UserInfo) -> str:
    """The e-mail's local part (or frameio-<id>), suffixed until no user has it."""
    user_model = get_user_model()
    base = ((info.email.split("@")[0] if info.email else "") or f"frameio-{info.id}")[:140]
    candidate, suffix = base, 1
    while user_model._default_manager.filter(**{user_model.USERNAME_FIELD: candidate}).exists():
        suffix += 1
        candidate = f"{base}-{suffix}"
    return candidate
