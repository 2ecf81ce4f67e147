"""Token admin: every secret read-only and replaced by a short fingerprint."""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.timesince import timeuntil
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .exceptions import FrameioOAuthError
from .models import OAuthToken


def fingerprint(secret: str | None) -> str:
    """The first 12 hex digits of SHA-256: enough to compare, useless to an attacker."""
    if not secret:
        return "—"
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


@admin.register(OAuthToken)
class OAuthTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "user",
        "provider_email",
        "status",
        "expires_in",
        "last_refreshed_at",
        "failure_count",
        "key_id",
    )
    list_filter = ("status", "provider")
    list_select_related = ("user",)
    search_fields = ("provider_email",)
    ordering = ("-updated_at",)
    actions = ("refresh_now", "revoke_and_disconnect")
    fields = (
        "user",
        "provider",
        "provider_user_id",
        "provider_email",
        "status",
        "access_token_fingerprint",
        "refresh_token_fingerprint",
        "key_id",
        "token_type",
        "scope",
        "expires_at",
        "next_refresh_at",
        "last_refreshed_at",
        "failure_count",
        "last_error",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # The user's own login name and e-mail, whatever the custom user model calls them.
        user_model = get_user_model()
        names = {user_model.USERNAME_FIELD, user_model.get_email_field_name()}
        own = {field.name for field in user_model._meta.get_fields()}
        return [f"user__{name}" for name in sorted(names & own)] + list(self.search_fields)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Deleting a row would leave the grant alive at Frame.io: use "Revoke and disconnect".
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Rows come only from a completed sign-in; a hand-made row would hold no real grant.
        return False

    @admin.display(description=_("expires in"), ordering="expires_at")
    def expires_in(self, obj: OAuthToken) -> str:
        if obj.expires_at <= timezone.now():
            return str(_("expired"))
        return timeuntil(obj.expires_at)

    @admin.display(description=_("key id"))
    def key_id(self, obj: OAuthToken) -> str:
        return obj.key_id or "—"

    @admin.display(description=_("access token"))
    def access_token_fingerprint(self, obj: OAuthToken) -> str:
        return self._fingerprint(obj, "access_token")

    @admin.display(description=_("refresh token"))
    def refresh_token_fingerprint(self, obj: OAuthToken) -> str:
        return self._fingerprint(obj, "refresh_token")

    @staticmethod
    def _fingerprint(obj: OAuthToken, name: str) -> str:
        try:
            return fingerprint(getattr(obj, name))
        except FrameioOAuthError:
            return str(_("cannot be decrypted with the configured keys"))

    @admin.action(description=_("Refresh now"), permissions=["change"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> None:
        refreshed, failed = 0, 0
        for token in queryset:
            try:
                services.refresh(token.pk, force=True)
            except FrameioOAuthError as exc:
                failed += 1
                self.message_user(request, f"{token}: {exc}", messages.WARNING)
            else:
                refreshed += 1
        if refreshed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d token was refreshed.",
                    "%(count)d tokens were refreshed.",
                    refreshed,
                )
                % {"count": refreshed},
                messages.SUCCESS,
            )

    @admin.action(description=_("Revoke and disconnect"), permissions=["delete"])
    def revoke_and_disconnect(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> None:
        confirmed, pending, unconfirmed = 0, 0, 0
        for token in queryset.select_related("user"):
            result = services.disconnect(token.user)
            if result.revoked_at_provider:
                confirmed += 1
            elif result.pending:
                pending += 1
            else:
                unconfirmed += 1
        if confirmed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d token was revoked and removed.",
                    "%(count)d tokens were revoked and removed.",
                    confirmed,
                )
                % {"count": confirmed},
                messages.SUCCESS,
            )
        if pending:
            self.message_user(
                request,
                ngettext(
                    "%(count)d token is disconnected; Frame.io did not confirm its "
                    "revocation, which will be retried and the row removed then.",
                    "%(count)d tokens are disconnected; Frame.io did not confirm their "
                    "revocation, which will be retried and the rows removed then.",
                    pending,
                )
                % {"count": pending},
                messages.WARNING,
            )
        if unconfirmed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d token was removed, but Frame.io did not confirm its revocation.",
                    "%(count)d tokens were removed, but Frame.io did not confirm their revocation.",
                    unconfirmed,
                )
                % {"count": unconfirmed},
                messages.WARNING,
            )
