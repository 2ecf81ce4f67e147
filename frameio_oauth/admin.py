"""Token admin: view-only pages, secrets shown as fingerprints; every removal goes through
``services.disconnect`` so the grant is revoked at Frame.io first (docs/security.md, "Admin")."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import services
from .admin_columns import FailingFilter, RefreshTokenFilter, TokenColumns
from .admin_columns import fingerprint as fingerprint  # where callers have always found it
from .decorators import non_atomic_requests_everywhere
from .exceptions import FrameioOAuthError, NotConnected, ReauthorizationRequired
from .models import OAuthToken
from .relative_time import ago

# An action starts no provider call after this long, so a silent provider (HTTP_TIMEOUT a row)
# cannot hold the request past a proxy's timeout; the rest are reported as not attempted.
ACTION_BUDGET = 20.0


_KEY_USES = {
    services.KeyUse.PRIMARY: _("primary"),
    services.KeyUse.OLD: _("old key: frameio_rotate_keys moves these rows"),
    services.KeyUse.MISSING: _("not in ENCRYPTION_KEYS: these rows cannot be decrypted"),
}


# The summary reads the whole table (a few seconds at 1,000,000 rows with Adobe-sized tokens):
# computed at most this often per process, and again after an action here changed rows.
STATUS_MAX_AGE = 60.0
_status_lock = threading.Lock()
_status_cache: list[tuple[float, services.TokenStatus]] = []


def cached_token_status() -> services.TokenStatus:
    with _status_lock:
        if _status_cache and time.monotonic() - _status_cache[0][0] < STATUS_MAX_AGE:
            return _status_cache[0][1]
    status = services.token_status()
    with _status_lock:
        _status_cache[:] = [(time.monotonic(), status)]
    return status


def forget_token_status() -> None:
    with _status_lock:
        _status_cache.clear()


def status_summary() -> dict[str, Any]:
    """What the token list shows above its table, in an admin's words."""
    status = cached_token_status()
    labels = dict(OAuthToken.Status.choices)
    return {
        "status": status,
        "taken": ago(status.taken_at),
        # A status outside the choices (a hand-edited row, a newer version's) as it is stored.
        "by_status": [(labels.get(name, name), count) for name, count in status.by_status.items()],
        "keys": [(key.key_id, key.rows, _KEY_USES[key.use]) for key in status.key_counts()],
    }


def why_not_refreshed(exc: FrameioOAuthError) -> str:
    """A failed refresh in an admin's words. The services' messages name rows by id, for
    logs; the provider's and the configuration's are redacted (exceptions.py) and kept."""
    if isinstance(exc, NotConnected):
        return gettext("it was disconnected meanwhile.")
    if isinstance(exc, ReauthorizationRequired):
        return gettext("Frame.io no longer accepts this grant; its user must connect again.")
    return str(exc)


@admin.register(OAuthToken)
class OAuthTokenAdmin(TokenColumns, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "user_name",
        "state",
        "last_refreshed",
        "next_attempt",
        "short_error",
    )
    list_filter = ("status", FailingFilter, RefreshTokenFilter, "provider")
    list_select_related = ("user",)
    search_fields = ("provider_email",)
    ordering = ("-updated_at",)
    # Revoking is not deleting: the confirmation pages and the change page's button say what
    # happens, in templates/admin/frameio_oauth/oauthtoken/ (where Django looks first).
    actions = ("refresh_now", "delete_selected")
    fields = (
        "user",
        "provider",
        "provider_user_id",
        "provider_email",
        "status",
        "renewal",
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[OAuthToken]:
        # With its user, in the same query: a token's name is its user's login name on every
        # page (change, delete, history), never "user 5".
        return super().get_queryset(request).select_related("user")

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # The user's own login name and e-mail, whatever the custom user model calls them.
        user_model = get_user_model()
        names = {user_model.USERNAME_FIELD, user_model.get_email_field_name()}
        own = {field.name for field in user_model._meta.get_fields()}
        return [f"user__{name}" for name in sorted(names & own)] + list(self.search_fields)

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 passes where the actions are shown and deprecates overrides without the
        # parameter; 5.2 and 6.0 do not pass it.
        if action_location is None:
            actions = super().get_actions(request)
        else:
            # The stubs follow mypy's python_version (3.11), so Django 5.2's signature.
            actions = super().get_actions(  # type: ignore[call-arg,unused-ignore]
                request, action_location=action_location
            )
        return actions

    @non_atomic_requests_everywhere
    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # The actions run here: under ATOMIC_REQUESTS, "Refresh now" would be refused (a
        # refresh never runs inside a caller's transaction) and a revocation would wait on it.
        # Titled as what it lists, not "Select Frame.io token to change": rows are view-only.
        context = {
            "title": self.opts.verbose_name_plural,
            # Called by the template, so an action's redirect never computes it.
            "frameio_status": status_summary,
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Rows come only from a completed sign-in; a hand-made row would hold no real grant.
        return False

    def has_change_permission(self, request: HttpRequest, obj: OAuthToken | None = None) -> bool:
        # A row's page is view-only (see the module docstring). Without an object this is the
        # permission the "Refresh now" action asks for, which writes through services.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def save_model(self, request: HttpRequest, obj: OAuthToken, form: Any, change: bool) -> None:
        # Unreachable while has_change_permission(obj) is False; a subclass that turns editing
        # back on must not get an unlocked full save of the secrets by accident.
        raise PermissionDenied("frameio_oauth tokens are written by frameio_oauth.services only")

    def delete_model(self, request: HttpRequest, obj: OAuthToken) -> None:
        # The delete view runs this in its own transaction; disconnect nests in it. A rollback
        # after the revocation leaves a dead grant, which the next refresh reports.
        self._disconnect(request, [obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> None:
        self._disconnect(request, queryset.select_related("user"))

    def log_deletions(self, request: HttpRequest, queryset: Any) -> list[LogEntry]:
        # Django logs before deleting; a row whose revocation Frame.io did not confirm stays,
        # so _disconnect logs each row once its outcome is known instead.
        return []

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        if IS_POPUP_VAR in request.POST:
            return super().response_delete(request, obj_display, obj_id)
        # delete_model has already said what happened: "deleted successfully" would be wrong
        # when the revocation is still pending and the row stays.
        opts = self.opts
        if self.has_change_permission(request, None):
            url = reverse(
                f"admin:{opts.app_label}_{opts.model_name}_changelist",
                current_app=self.admin_site.name,
            )
            url = add_preserved_filters(
                {"preserved_filters": self.get_preserved_filters(request), "opts": opts}, url
            )
        else:
            url = reverse("admin:index", current_app=self.admin_site.name)
        return HttpResponseRedirect(url)

    @admin.action(description=_("Refresh now"), permissions=["change"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> None:
        try:
            self._refresh_each(request, queryset)
        finally:
            forget_token_status()  # the summary counted the rows as they were

    def _refresh_each(self, request: HttpRequest, queryset: QuerySet[OAuthToken]) -> None:
        refreshed, failed, skipped = 0, 0, 0
        deadline = time.monotonic() + ACTION_BUDGET
        for token in queryset.select_related("user"):
            if time.monotonic() > deadline:
                skipped += 1
                continue
            try:
                services.refresh(token.pk, force=True)
            except FrameioOAuthError as exc:
                failed += 1
                reason = why_not_refreshed(exc)
                self._log(request, token, CHANGE, gettext("Refresh failed: %s") % reason)
                self.message_user(
                    request,
                    gettext("%(token)s was not refreshed: %(reason)s")
                    % {"token": token, "reason": reason},
                    messages.WARNING,
                )
            else:
                refreshed += 1
                self._log(request, token, CHANGE, gettext("Refreshed"))
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
        self._report_not_attempted(request, skipped)

    @admin.action(
        description=_("Revoke at Frame.io and remove selected %(verbose_name_plural)s"),
        permissions=["delete"],
    )
    def delete_selected(
        self, request: HttpRequest, queryset: QuerySet[OAuthToken]
    ) -> HttpResponse | None:
        # Django's own confirmation page first; once confirmed, the revocation (which Django's
        # action would report as "Successfully deleted" even when the rows stay).
        if request.POST.get("post"):
            # Django's own checks first: a project's model that protects tokens, or a
            # cascade the admin may not delete, must stop this before anything is revoked.
            _, _, perms_needed, protected = self.get_deleted_objects(queryset, request)
            if not (perms_needed or protected):
                self._disconnect(request, queryset.select_related("user"))
                return None
        response: HttpResponse | None = django_delete_selected(self, request, queryset)
        if isinstance(response, TemplateResponse) and response.context_data is not None:
            context = response.context_data
            if not (context.get("perms_lacking") or context.get("protected")):
                context["title"] = gettext("Revoke at Frame.io and remove?")
        return response

    def render_delete_form(self, request: HttpRequest, context: dict[str, Any]) -> HttpResponse:
        # The single row's page: Django titles it "Delete"; "Cannot delete" stays as it is.
        if not (context.get("perms_lacking") or context.get("protected")):
            context["title"] = gettext("Revoke at Frame.io and remove?")
        return super().render_delete_form(request, context)

    def _disconnect(self, request: HttpRequest, tokens: Iterable[OAuthToken]) -> None:
        try:
            self._disconnect_each(request, tokens)
        finally:
            forget_token_status()  # the summary counted the rows as they were

    def _disconnect_each(self, request: HttpRequest, tokens: Iterable[OAuthToken]) -> None:
        confirmed, pending, unconfirmed, elsewhere, gone, skipped = 0, 0, 0, 0, 0, 0
        errors: set[str] = set()
        deadline = time.monotonic() + ACTION_BUDGET
        for token in tokens:
            if time.monotonic() > deadline:
                skipped += 1
                continue
            try:
                result = services.disconnect(token.user)
            except NotConnected:
                # Removed meanwhile, by another admin or by the sweep's deferred revocation.
                gone += 1
                continue
            if result.issued_elsewhere:
                elsewhere += 1
                self._log(request, token, DELETION, gettext("Issued by another server"))
                continue
            if result.error:
                errors.add(result.error)
            if result.revoked_at_provider:
                confirmed += 1
                self._log(request, token, DELETION, "")
            elif result.pending:
                pending += 1
                self._log(request, token, CHANGE, gettext("Revocation pending"))
            else:
                unconfirmed += 1
                self._log(request, token, DELETION, gettext("Revocation not confirmed"))
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
        reason = gettext(" Reason: %(errors)s") % {"errors": "; ".join(sorted(errors))}
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
                % {"count": pending}
                + reason,
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
                % {"count": unconfirmed}
                + reason,
                messages.WARNING,
            )
        if elsewhere:
            self.message_user(
                request,
                ngettext(
                    "%(count)d token was removed with nothing sent to Frame.io: it was issued "
                    "by an authorization server this site no longer uses.",
                    "%(count)d tokens were removed with nothing sent to Frame.io: they were "
                    "issued by an authorization server this site no longer uses.",
                    elsewhere,
                )
                % {"count": elsewhere},
                messages.INFO,
            )
        if gone:
            self.message_user(
                request,
                ngettext(
                    "%(count)d token had already been removed.",
                    "%(count)d tokens had already been removed.",
                    gone,
                )
                % {"count": gone},
                messages.INFO,
            )
        self._report_not_attempted(request, skipped)

    def _log(self, request: HttpRequest, token: OAuthToken, flag: int, message: str) -> None:
        # The row may be gone already: log the instance as it was, by its primary key.
        # The admin site lets only signed-in staff this far.
        assert request.user.pk is not None
        LogEntry.objects.log_actions(
            user_id=request.user.pk,
            queryset=[token],
            action_flag=flag,
            change_message=message,
            single_object=True,
        )

    def _report_not_attempted(self, request: HttpRequest, skipped: int) -> None:
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d token was not attempted: the action ran out of time (Frame.io "
                    "is slow or not answering). Select it again to retry.",
                    "%(count)d tokens were not attempted: the action ran out of time (Frame.io "
                    "is slow or not answering). Select them again to retry.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )
