"""What the app's pages show a person: the state of their connection, the way back to the
site, and what the error page offers next. The views render these; templates read them."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render, resolve_url
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import OAuthToken
from .refusals import NextStep, Refused


class Connection(enum.Enum):
    """A user's connection as the connected page tells it; templates compare ``.value``."""

    NONE = "none"
    ACTIVE = "active"
    # Active, but Frame.io gave no refresh token: it works until it expires, then must be
    # connected again (a public client, or a grant without the offline scope).
    NO_REFRESH_TOKEN = "no_refresh_token"
    EXPIRED = "expired"  # no refresh token, and past its expiry
    REAUTH_REQUIRED = "reauth_required"
    REVOCATION_PENDING = "revocation_pending"  # disconnected; Frame.io has not confirmed


def connection_of(token: OAuthToken | None, now: datetime | None = None) -> Connection:
    if token is None:
        return Connection.NONE
    if token.status == OAuthToken.Status.REVOKED:
        return Connection.REVOCATION_PENDING
    if token.status == OAuthToken.Status.REAUTH_REQUIRED:
        return Connection.REAUTH_REQUIRED
    # The ciphertext's presence, not a decryption: the page must render with a lost key too.
    if token.ciphertexts()[1]:
        return Connection.ACTIVE
    if token.is_expired(now or timezone.now()):
        return Connection.EXPIRED
    return Connection.NO_REFRESH_TOKEN


def site_url() -> str:
    """Where "Back to the site" leads without a ``next``: the root of the site, under the
    script prefix when the project is served below one."""
    return get_script_prefix()


def page(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HttpResponse:
    """Render one of the app's pages; every one has a way back to where the visitor came
    from (``next``), else to the site."""
    back_url = context.get("next") or site_url()
    return render(
        request,
        template,
        {"back_url": back_url, "site_url": site_url(), **context},
        status=status,
    )


def start_url(next_url: str) -> str:
    start = reverse("frameio_oauth:login")
    return f"{start}?next={quote(next_url, safe='')}" if next_url else start


def sign_in_url(then: str) -> str | None:
    """The site's sign-in page (LOGIN_URL) with ``next`` set to ``then``, as
    ``redirect_to_login`` builds it; None when the sign-in page is this app's own start page,
    which cannot help a visitor it has just refused."""
    login_url = resolve_url(settings.LOGIN_URL)
    parts = urlsplit(login_url)
    if parts.path == reverse("frameio_oauth:login"):
        return None
    query = QueryDict(parts.query, mutable=True)
    query["next"] = then
    return urlunsplit(parts._replace(query=query.urlencode(safe="/")))


def error_page(request: HttpRequest, refused: Refused, next_url: str) -> HttpResponse:
    """The error page: the message, one way forward if there is one, and the way back."""
    retry_url: str | None = None
    retry_label = ""
    if refused.next_step is NextStep.SIGN_IN:
        retry_url = sign_in_url(start_url(next_url))
        retry_label = _("Sign in")
    if refused.next_step is NextStep.TRY_AGAIN or (
        refused.next_step is NextStep.SIGN_IN and retry_url is None
    ):
        retry_url = start_url(next_url)
        retry_label = _("Try again")
    return page(
        request,
        "frameio_oauth/error.html",
        {
            "error_code": refused.code,
            "message": str(refused),
            "next": next_url,
            "retry_url": retry_url,
            "retry_label": retry_label,
            "connect": request.user.is_authenticated,
        },
        status=refused.status,
    )
