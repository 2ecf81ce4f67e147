"""Which local user a Frame.io identity belongs to. Linked by the provider's user id, never by
e-mail alone: an e-mail address at Frame.io proves nothing about an account here."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, router, transaction

from ..conf import conf
from ..exceptions import GrantRefused, UnusableProviderValue
from ..models import OAuthToken
from ..provider import UserInfo

Reason = GrantRefused.Reason

logger = logging.getLogger("frameio_oauth.services")

SIGNUP_ATTEMPTS = 5


def user_for_identity(info: UserInfo) -> AbstractBaseUser:
    """The user linked to ``info.id``; else a new user if ALLOW_SIGNUP; else GrantRefused."""
    linked = (
        OAuthToken.objects.connected().select_related("user").filter(provider_user_id=info.id)
    ).first()
    if linked is not None:
        if not linked.user.is_active:
            raise GrantRefused(Reason.INACTIVE, f"user {linked.user_id} is not active")
        return linked.user
    if not conf.allow_signup:
        raise GrantRefused(Reason.NO_ACCOUNT, "no user is linked to this identity; sign-up is off")
    user_model = get_user_model()
    email_field = user_model.get_email_field_name()
    if info.email and hasattr(user_model, email_field):
        _check_user_value(email_field, info.email)
    if email_field == user_model.USERNAME_FIELD:
        return _new_user_named_by_email(info)
    # Two sign-ups can pick the same free name at once; the loser takes the next one.
    for _attempt in range(SIGNUP_ATTEMPTS):
        name = _free_username(info)
        user = user_model(**{user_model.USERNAME_FIELD: name})
        if info.email and hasattr(user, email_field):
            setattr(user, email_field, info.email)
        user.set_unusable_password()
        try:
            with transaction.atomic(using=router.db_for_write(user_model)):
                user.save()
        except IntegrityError as exc:
            if _username_taken(name):
                continue
            # Another unique constraint (a custom user's unique e-mail, say): trying other
            # names cannot help.
            raise _signup_conflict() from exc
        return user
    raise GrantRefused(Reason.BUSY, "concurrent sign-ups took every free name")


def _new_user_named_by_email(info: UserInfo) -> AbstractBaseUser:
    """Sign-up where the e-mail is the username: an existing account with that address is
    someone's here, and an address at Frame.io proves nothing about it, so it is not linked."""
    user_model = get_user_model()
    if not info.email:
        raise GrantRefused(Reason.NO_EMAIL, "no e-mail address to name a new user by")
    taken = GrantRefused(Reason.EMAIL_TAKEN, "a user with this e-mail address exists")
    # Case-insensitively: Alice@x and alice@x reach one mailbox, so they are one person's.
    if _username_taken(info.email):
        raise taken
    user = user_model(**{user_model.USERNAME_FIELD: info.email})
    user.set_unusable_password()
    try:
        with transaction.atomic(using=router.db_for_write(user_model)):
            user.save()
    except IntegrityError as exc:
        if _username_taken(info.email):
            raise taken from exc
        raise _signup_conflict() from exc
    return user


def _check_user_value(name: str, value: str) -> None:
    """Raise UnusableProviderValue unless ``value`` fits the user model's field ``name``
    (a custom user model's may be shorter than the token's columns)."""
    field = get_user_model()._meta.get_field(name)
    label = str(field.verbose_name)  # type: ignore[union-attr]
    try:
        field.clean(value, None)  # type: ignore[union-attr]
    except ValidationError as exc:
        raise UnusableProviderValue(name, " ".join(exc.messages), label=label) from None


def _signup_conflict() -> GrantRefused:
    # The database's message is not logged: it quotes the conflicting values.
    logger.warning("sign-up refused by a unique constraint other than the username's")
    return GrantRefused(Reason.SIGNUP_CONFLICT, "another unique constraint refused the user")


def _username_taken(name: str) -> bool:
    """Whether a user has ``name``, in any case: names differing only in case are confusable."""
    user_model = get_user_model()
    lookup = f"{user_model.USERNAME_FIELD}__iexact"
    return bool(user_model._default_manager.filter(**{lookup: name}).exists())


def _free_username(info: UserInfo) -> str:
    """The e-mail's local part (or frameio-<id>), in the characters Django's own username
    validator allows, suffixed until no user has it."""
    user_model = get_user_model()
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    limit = getattr(field, "max_length", None) or 150
    local_part = info.email.split("@")[0] if info.email else ""
    base = _USERNAME_JUNK.sub("", local_part) or _USERNAME_JUNK.sub("", f"frameio-{info.id}")
    # Room for a "-<n>" suffix within the username column.
    base = base[: max(limit - 10, 1)]
    if not _valid_username(field, base):
        base = "frameio-user"
    for suffix in range(1, _MAX_SUFFIX):
        candidate = base if suffix == 1 else f"{base}-{suffix}"
        if _valid_username(field, candidate) and not _username_taken(candidate):
            return candidate
    raise GrantRefused(Reason.SIGNUP_CONFLICT, "no valid free username could be made")


_MAX_SUFFIX = 1000


# What UnicodeUsernameValidator, Django's default, allows: letters, digits and @.+-_
_USERNAME_JUNK = re.compile(r"[^\w.@+-]")


def _valid_username(field: Any, name: str) -> bool:
    try:
        field.run_validators(name)
    except ValidationError:
        return False
    return True
