"""Every error this app raises derives from :class:`FrameioOAuthError`. No message carries a
token, code, verifier or secret; provider text in one is printable, redacted and cut short."""

from __future__ import annotations

import enum
from datetime import datetime

from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured


class FrameioOAuthError(Exception):
    """Base class of every error raised by frameio_oauth."""


class SettingsError(FrameioOAuthError, DjangoImproperlyConfigured):
    """The FRAMEIO_OAUTH setting cannot be used as it is (see ``manage.py check``). Also a
    Django ``ImproperlyConfigured``, so code that catches that catches this."""


# The name it had before; kept for code that imports it.
ImproperlyConfigured = SettingsError


class NotConnected(FrameioOAuthError):
    """The user has no Frame.io token stored."""


class ReauthorizationRequired(FrameioOAuthError):
    """The grant is gone (invalid_grant, revoked, expired refresh token): the user must sign in
    with Frame.io again. Never retried."""


class ProviderError(FrameioOAuthError):
    """The provider refused the request or answered with something we cannot use.

    Not transient: retrying the same request will fail the same way. ``code`` is the OAuth
    ``error`` the provider sent (``"invalid_client"``...), if it sent one.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class UnusableProviderValue(ProviderError):
    """The provider sent a value (a user id, an e-mail address, a scope...) that cannot be
    stored as it is: too long for its column, control characters, not an e-mail address.
    ``field`` names it; the message never quotes the value."""

    def __init__(self, field: str, reason: str, *, label: str | None = None) -> None:
        super().__init__(f"the {label or field} the provider sent cannot be stored: {reason}")
        self.field = field


class ProviderUnavailable(FrameioOAuthError):
    """A transient failure: timeout, connection error, HTTP 5xx or 429. Safe to retry later.

    ``retry_after`` is the provider's ``Retry-After`` in seconds, if it sent one. ``retry_at``
    is set when a refresh recorded the failure on the token's row: the time the row backs off
    until (a retry before then finds the token not due and does nothing).
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.retry_at: datetime | None = None


class RateLimited(ProviderUnavailable):
    """The provider answered HTTP 429: too many requests. Transient, like every
    :class:`ProviderUnavailable`; told apart so that metrics can count it."""


class RefreshInsideTransaction(FrameioOAuthError):
    """A refresh was asked for inside the caller's open transaction (e.g. ATOMIC_REQUESTS).

    Refused, because a rollback of that transaction after the provider rotated the refresh
    token would restore the spent one, and presenting it again can revoke the user's grant.
    """


class DecryptionError(FrameioOAuthError):
    """A stored secret could not be decrypted: unknown key id, wrong key, tampered or moved
    ciphertext. Nothing is returned in its place."""


class GrantRefused(FrameioOAuthError):
    """A new grant that is not stored, and why (``reason``). Only a grant nobody here is linked
    to (NO_ACCOUNT) is given back; the others are left to expire (docs/security.md)."""

    class Reason(enum.Enum):
        NO_ACCOUNT = "no_account"  # nobody here is linked to it, and sign-up is off
        LINKED_ELSEWHERE = "linked_elsewhere"  # that Frame.io account is another user's here
        INACTIVE = "inactive"  # the linked user is disabled
        NO_EMAIL = "no_email"  # sign-up needs an e-mail address as the username
        EMAIL_TAKEN = "email_taken"  # sign-up: that address already has an account here
        SIGNUP_CONFLICT = "signup_conflict"  # sign-up refused by another unique constraint
        BUSY = "busy"  # a concurrent sign-in of the same account won the race

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
