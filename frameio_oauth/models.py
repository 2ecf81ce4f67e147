"""One Frame.io grant per user, its secrets encrypted at rest."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, router
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .conf import conf
from .crypto import envelope_key_id
from .exceptions import UnusableProviderValue
from .fields import EncryptedTextField, without_plaintext

# The fields that name a token's owner, as update() and update_fields may spell them.
_OWNER_NAMES = frozenset({"user", "user_id"})


class OwnerChangeRefused(ValueError):
    """A token belongs to the user who granted it: its secrets are encrypted for that user."""


def _refuse_owner_change(names: Iterable[str], how: str) -> None:
    if _OWNER_NAMES & set(names):
        raise OwnerChangeRefused(
            f"OAuthToken {how} cannot change a token's user: a token belongs to the user who "
            "granted it; connect the other user instead"
        )


def configured_authorization_server() -> str:
    """A row saved without naming its authorization server is the configured one's: the same
    assumption migration 0004 makes of the rows it finds (:attr:`Conf.authorization_server`)."""
    return conf.authorization_server


class OAuthTokenQuerySet(models.QuerySet["OAuthToken"]):
    def update(self, **kwargs: Any) -> int:
        _refuse_owner_change(kwargs, "update()")
        return super().update(**kwargs)

    def bulk_update(
        self, objs: Iterable[OAuthToken], fields: Iterable[str], batch_size: int | None = None
    ) -> int:
        fields = list(fields)
        _refuse_owner_change(fields, "bulk_update()")
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def active(self) -> OAuthTokenQuerySet:
        return self.filter(status=OAuthToken.Status.ACTIVE)

    def connected(self) -> OAuthTokenQuerySet:
        """Every token but a disconnected one whose revocation is still pending."""
        return self.exclude(status=OAuthToken.Status.REVOKED)

    def due(self, now: datetime | None = None) -> OAuthTokenQuerySet:
        """Active tokens whose refresh time has come, oldest first (one index range scan)."""
        return self.filter(
            status=OAuthToken.Status.ACTIVE,
            next_refresh_at__lte=now or timezone.now(),
        ).order_by("next_refresh_at")


class OAuthToken(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        REAUTH_REQUIRED = "reauth_required", _("Re-authorization required")
        # The user disconnected but Frame.io has not confirmed the revocation yet: the row
        # stays until a retry gets it through (a confirmed revocation deletes the row).
        REVOKED = "revoked", _("Disconnected, revocation pending")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="frameio_token",
        verbose_name=_("user"),
    )
    provider = models.CharField(_("provider"), max_length=32)
    # The only server its tokens are ever sent to (docs: security, "A token goes back only to
    # its server"): a row of another one is marked reauth_required, never refreshed there.
    authorization_server = models.TextField(
        _("authorization server"), default=configured_authorization_server
    )
    provider_user_id = models.CharField(_("provider user id"), max_length=255)
    provider_email = models.EmailField(_("provider e-mail"), max_length=254, blank=True)
    access_token = EncryptedTextField(_("access token"), aad_field="user_id")
    # NULL, not "", when the provider sent none (no offline scope): the row is never due.
    refresh_token = EncryptedTextField(_("refresh token"), aad_field="user_id", null=True)
    token_type = models.CharField(_("token type"), max_length=32, default="Bearer")
    scope = models.CharField(_("scope"), max_length=1024, blank=True)
    expires_at = models.DateTimeField(_("expires at"))
    # NULL when there is no refresh token: such a row is never due.
    next_refresh_at = models.DateTimeField(_("next refresh at"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=32, choices=Status.choices, default=Status.ACTIVE
    )
    last_refreshed_at = models.DateTimeField(_("last refreshed at"), null=True, blank=True)
    failure_count = models.PositiveIntegerField(_("consecutive failures"), default=0)
    last_error = models.CharField(_("last error"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = OAuthTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("Frame.io token")
        verbose_name_plural = _("Frame.io tokens")
        indexes = [
            # id last: the sweep's keyset pages seek on (next_refresh_at, id) and read the
            # rows in index order, even when many share one next_refresh_at.
            models.Index(fields=["status", "next_refresh_at", "id"], name="frameio_oauth_due_idx"),
        ]
        constraints = [
            # One Frame.io account, one local user; a constraint, not unique=True, which would
            # add a LIKE index every refresh writes to (docs/design.md, "Indexes").
            models.UniqueConstraint(
                fields=["provider_user_id"], name="frameio_oauth_unique_provider_user_id"
            ),
        ]

    def __str__(self) -> str:
        # The user's login name when the user is loaded with the token (the admin does so);
        # never a query of its own, so str() cannot fail or cost a round trip in a receiver.
        field = self._meta.get_field("user")
        if field.is_cached(self):  # type: ignore[union-attr]
            user = self.user.get_username()
        else:
            user = gettext("user %(id)s") % {
                "id": self.user_id if self.user_id is not None else "—"
            }
        return gettext("Frame.io token of %(user)s (%(status)s)") % {
            "user": user,
            "status": self.get_status_display(),
        }

    def __repr__(self) -> str:
        return (
            f"<OAuthToken id={self.pk} user_id={self.user_id} status={self.status} "
            f"expires_at={self.expires_at}>"
        )

    @sensitive_variables()
    def __getstate__(self) -> dict[str, Any]:
        # Pickles (the cache framework, task arguments, sessions) carry ciphertext only.
        return without_plaintext(self, super().__getstate__())

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            # Any iterable, as Django takes it: read once, since a generator read twice is empty.
            update_fields = kwargs["update_fields"] = frozenset(update_fields)
        if not self._state.adding and (update_fields is None or _OWNER_NAMES & update_fields):
            using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
            stored = type(self)._base_manager.using(using).filter(pk=self.pk)
            if stored.exclude(user_id=self.user_id).exists():
                _refuse_owner_change(_OWNER_NAMES, "save()")
        super().save(*args, **kwargs)

    # --- rules about one row ----------------------------------------------------------------

    SECRET_FIELDS = ("access_token", "refresh_token")
    # What a successful refresh changes; its UPDATE names these columns only.
    REFRESHED_FIELDS = (
        *SECRET_FIELDS,
        "token_type",
        "scope",
        "expires_at",
        "next_refresh_at",
        "last_refreshed_at",
        "failure_count",
        "last_error",
        "updated_at",
    )

    def ciphertexts(self) -> tuple[str | None, str | None]:
        """The access and refresh token columns as they are on the instance: every write of a
        secret encrypts it afresh, so these tell one stored grant from any other."""
        values = self.__dict__
        return (
            values.get(self.ciphertext_column("access_token")),
            values.get(self.ciphertext_column("refresh_token")),
        )

    @classmethod
    def ciphertext_column(cls, name: str) -> str:
        """The attname of a secret's column (``access_token`` -> ``access_token_ciphertext``)."""
        return str(cls._meta.get_field(name).attname)  # type: ignore[union-attr]

    @classmethod
    def fit(cls, name: str, text: str) -> str:
        """``text`` cut to the length of column ``name`` (for our own messages, which may
        quote a provider's words)."""
        limit = getattr(cls._meta.get_field(name), "max_length", None)
        return text[:limit] if limit else text

    def record_failure(self, error: object, retry_at: datetime) -> list[str]:
        """Count a failed refresh and back off until ``retry_at``; the fields to save."""
        self.failure_count += 1
        self.next_refresh_at = retry_at
        self.last_error = self.fit("last_error", str(error))
        return ["failure_count", "next_refresh_at", "last_error", "updated_at"]

    def mark_reauth_required(self, error: object) -> list[str]:
        """The grant is gone (invalid_grant, no refresh token): the user must connect again;
        never refreshed again. The fields to save."""
        self.status = self.Status.REAUTH_REQUIRED
        self.next_refresh_at = None
        self.last_error = self.fit("last_error", str(error))
        return ["status", "next_refresh_at", "last_error", "updated_at"]

    def issued_elsewhere(self) -> bool:
        """Whether another authorization server than the configured one issued this grant
        (the site switched servers since): its tokens are never sent to either."""
        return self.authorization_server != conf.authorization_server

    def issued_elsewhere_message(self) -> str:
        """Why a grant of another server is given up, for ``last_error`` and the logs."""
        return self.fit(
            "last_error",
            f"connect again: this grant was issued by {self.authorization_server}, and this "
            f"site now uses {conf.authorization_server}; it is neither refreshed nor revoked "
            "at either server",
        )

    def mark_revocation_pending(
        self, error: object, attempts: int, retry_at: datetime
    ) -> list[str]:
        """Disconnected, but the provider has not confirmed the revocation: kept for a retry
        at ``retry_at``. The fields to save."""
        self.status = self.Status.REVOKED
        self.failure_count = attempts
        self.next_refresh_at = retry_at
        self.last_error = self.fit("last_error", f"revocation: {error}")
        return ["status", "failure_count", "next_refresh_at", "last_error", "updated_at"]

    @property
    def key_id(self) -> str | None:
        """The id of the key the access token is encrypted under (not secret)."""
        envelope: Any = self.__dict__.get(self.ciphertext_column("access_token"))
        return envelope_key_id(envelope) if envelope else None

    @classmethod
    def check_provider_value(cls, name: str, value: str) -> None:
        """Raise :class:`UnusableProviderValue` unless the provider's ``value`` fits column
        ``name`` as it is, so nothing is cut short or refused by the database later."""
        field = cls._meta.get_field(name)
        if not value.isprintable():
            # NUL, which PostgreSQL refuses, and other control characters nobody means.
            raise UnusableProviderValue(name, "it contains control characters", label=_label(field))
        limit = getattr(field, "max_length", None)
        if type(field) is models.CharField and (limit is None or len(value) <= limit):
            return  # nothing else to check, and this runs on every refresh
        try:
            field.clean(value, None)  # type: ignore[union-attr]
        except ValidationError as exc:
            raise UnusableProviderValue(name, " ".join(exc.messages), label=_label(field)) from None

    @classmethod
    def fits(cls, name: str, value: str) -> bool:
        """Whether the provider's ``value`` fits column ``name`` (see check_provider_value)."""
        try:
            cls.check_provider_value(name, value)
        except UnusableProviderValue:
            return False
        return True

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or timezone.now())


def _label(field: Any) -> str:
    return str(field.verbose_name)
