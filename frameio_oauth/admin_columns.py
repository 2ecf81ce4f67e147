"""What the token admin shows of a row: the list's columns and filters, the row page's
read-only fields. Secrets only as fingerprints (docs/security.md, "Admin")."""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .exceptions import FrameioOAuthError
from .models import OAuthToken
from .relative_time import ago, from_now


def fingerprint(secret: str | None) -> str:
    """The first 12 hex digits of SHA-256: enough to compare, useless to an attacker."""
    if not secret:
        return "—"
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


class FailingFilter(admin.SimpleListFilter):
    """Rows whose last refresh (or pending revocation) failed: where an admin looks first.
    ``last_error`` is what every failure sets and a success clears; a refused grant
    (``reauth_required``) sets it without counting a failure."""

    title = _("last attempt")
    parameter_name = "failing"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("failed")), ("no", _("succeeded"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> Any:
        if self.value() == "yes":
            return queryset.exclude(last_error="")
        if self.value() == "no":
            return queryset.filter(last_error="")
        return queryset


class RefreshTokenFilter(admin.SimpleListFilter):
    """Rows stored without a refresh token (a public client, no offline scope): they work
    until they expire, then their users must connect again."""

    title = _("refresh token")
    parameter_name = "refresh_token"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("present")), ("no", _("missing"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> Any:
        if self.value() == "yes":
            return queryset.filter(refresh_token__isnull=False)
        if self.value() == "no":
            return queryset.filter(refresh_token__isnull=True)
        return queryset


class TokenColumns:
    """The columns and read-only fields of OAuthTokenAdmin."""

    # The list fits a 1280 px window beside Django's two sidebars: five columns, the user's
    # Frame.io e-mail under their name, expiry under the status, times in words of one unit;
    # the key id is on each row's page.

    @admin.display(description=_("user"), ordering=f"user__{get_user_model().USERNAME_FIELD}")
    def user_name(self, obj: OAuthToken) -> str:
        # The login name, as the token's own name says it (OAuthToken.__str__).
        if not obj.provider_email:
            return obj.user.get_username()
        return format_html(
            '{}<br><span class="quiet">{}</span>', obj.user.get_username(), obj.provider_email
        )

    @admin.display(description=_("status"), ordering="status")
    def state(self, obj: OAuthToken) -> str:
        if obj.status != OAuthToken.Status.ACTIVE:
            return obj.get_status_display()
        notes = [self.expires_in(obj)]
        if not obj.ciphertexts()[1]:
            # It works until it expires; then its user must connect again.
            notes.append(str(_("no refresh token")))
        return format_html(
            '{}<br><span class="quiet">{}</span>',
            obj.get_status_display(),
            format_html_join(mark_safe("<br>"), "{}", ((note,) for note in notes)),
        )

    @admin.display(description=_("expires"), ordering="expires_at")
    def expires_in(self, obj: OAuthToken) -> str:
        if obj.is_expired():
            return str(_("expired"))
        return gettext("expires %(when)s") % {"when": from_now(obj.expires_at, depth=1)}

    @admin.display(description=_("renewal"))
    def renewal(self, obj: OAuthToken) -> str:
        if obj.ciphertexts()[1]:
            return str(_("automatic, with its refresh token"))
        return str(
            _(
                "none: Frame.io gave no refresh token, so the user must connect again when the "
                "access token expires"
            )
        )

    @admin.display(description=_("refreshed"), ordering="last_refreshed_at")
    def last_refreshed(self, obj: OAuthToken) -> str:
        return ago(obj.last_refreshed_at, depth=1) or "—"

    @admin.display(description=_("next attempt"), ordering="next_refresh_at")
    def next_attempt(self, obj: OAuthToken) -> str:
        # The next refresh, or for a disconnected row the next try at its revocation.
        if obj.next_refresh_at is None:
            return "—"
        if obj.next_refresh_at <= timezone.now():
            return str(_("due"))
        return from_now(obj.next_refresh_at, depth=1)

    @admin.display(description=_("last error"), ordering="failure_count")
    def short_error(self, obj: OAuthToken) -> str:
        # Redacted when stored (see exceptions.py); cut so the list stays readable. A refused
        # grant has an error but no count of failures.
        if not obj.last_error:
            return "—"
        if obj.failure_count:
            return ngettext(
                "%(count)d failure: %(error)s", "%(count)d failures: %(error)s", obj.failure_count
            ) % {"count": obj.failure_count, "error": obj.last_error[:80]}
        return obj.last_error[:80]

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
