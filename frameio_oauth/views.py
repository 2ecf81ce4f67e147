"""Login, callback, connected and disconnect views, and the optional sign-in page. Thin: the
rules live in services."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from urllib.parse import urlsplit

from django.conf import global_settings, settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_not_required, login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from . import flows, pages, provider, refusals, services
from .conf import conf
from .decorators import non_atomic_requests_everywhere
from .exceptions import (
    FrameioOAuthError,
    GrantRefused,
    NotConnected,
    ProviderUnavailable,
    ReauthorizationRequired,
    UnusableProviderValue,
)
from .flows import SESSION_KEY as SESSION_KEY  # where callers have always found it
from .flows import FlowRejected, PendingFlow, starter_of
from .models import OAuthToken

logger = logging.getLogger(__name__)


# Query parameters of the callback that must not outlive their first read.
CALLBACK_SECRETS = ("code", "state")
# RFC 6749 section 3.1: these must not appear more than once. Which copy would count is
# ambiguous, and the one not used could be echoed back in an error unredacted.
SINGLE_PARAMETERS = ("code", "state", "error", "iss")
MASK = "********"
RAW_REQUEST_TARGETS = ("RAW_URI", "REQUEST_URI")


@never_cache
# A page whose one button connects an account must not be framed by another site.
@xframe_options_deny
# Explicit, so a project without CsrfViewMiddleware is protected too.
@csrf_protect
@require_http_methods(["GET", "POST"])
# Anonymous visitors sign in here, also under Django's LoginRequiredMiddleware.
@login_not_required
def login(request: HttpRequest) -> HttpResponse:
    """GET shows a page with one button, which POSTs here; the POST starts the flow. A GET
    that started it would let any page connect the visitor's site account to whatever
    Frame.io account their browser is signed in to. LOGIN_ON_GET lets an anonymous visitor's
    GET start a sign-in; a connect always needs the POST."""
    if request.method == "POST":
        return _start(request, _safe_next(request, request.POST.get("next")))
    next_url = _safe_next(request, request.GET.get("next"))
    if conf.login_on_get and not request.user.is_authenticated:
        return _start(request, next_url)
    # Rendering writes nothing to the session: the CSRF token travels in its own cookie.
    return pages.page(
        request,
        "frameio_oauth/start.html",
        {
            "next": next_url,
            "connect": request.user.is_authenticated,
            "username": request.user.get_username(),
        },
    )


@sensitive_variables()
def _start(request: HttpRequest, next_url: str) -> HttpResponse:
    """Remember state, verifier and who is starting, then go to Frame.io."""
    redirect_uri = conf.redirect_uri or request.build_absolute_uri(
        reverse("frameio_oauth:callback")
    )
    _warn_if_other_host(request, redirect_uri)
    auth_request = provider.build_authorization_request(redirect_uri)
    flows.remember(
        request,
        PendingFlow(
            state=auth_request.state,
            verifier=auth_request.code_verifier,
            redirect_uri=redirect_uri,
            next=next_url,
            starter=starter_of(request.user),
            created=time.time(),
        ),
    )
    return HttpResponseRedirect(auth_request.url)


@never_cache
@require_GET
@login_not_required
# Under ATOMIC_REQUESTS the spent state would not be committed before the slow exchange, and
# the refresh rule refuses to run inside a caller's transaction anyway.
@non_atomic_requests_everywhere
@sensitive_variables()
def callback(request: HttpRequest) -> HttpResponse:
    code = request.GET.get("code", "")
    state = request.GET.get("state", "")
    error = request.GET.get("error")
    issuers = request.GET.getlist("iss")
    _hide_callback_secrets(request)
    flow: PendingFlow | None = None
    try:
        if any(len(request.GET.getlist(name)) > 1 for name in SINGLE_PARAMETERS):
            raise refusals.Refused(
                "repeated_parameter",
                _("The answer from Frame.io was malformed, so nothing was connected; start again."),
            )
        if error:
            # Spend the state if it is ours, so the same link cannot be replayed later.
            with contextlib.suppress(FlowRejected):
                flow = flows.claim(request, state)
            _check_issuer(issuers)
            raise refusals.for_provider_error(error)
        flow = _claim(request, state)
        _check_issuer(issuers)
        response = _complete(request, flow, code)
    except refusals.Refused as exc:
        logger.info("Frame.io callback refused: %s", exc.code)
        if exc.code == "unknown_state" and flows.was_spent(state) and _is_connected(request):
            # The Back button to the consent page after it connected: nothing went wrong. A
            # state never used (evicted by newer flows) still gets the error.
            messages.info(request, _("Frame.io is already connected."))
            response = HttpResponseRedirect(reverse("frameio_oauth:connected"))
        else:
            response = pages.error_page(request, exc, flow.next if flow is not None else "")
    # The URL carried a code: never let it leak to the next page's resources.
    response["Referrer-Policy"] = "no-referrer"
    return response


def _claim(request: HttpRequest, state: str) -> PendingFlow:
    try:
        return flows.claim(request, state)
    except FlowRejected as exc:
        raise refusals.for_flow(exc) from exc


def _is_connected(request: HttpRequest) -> bool:
    return bool(
        request.user.is_authenticated
        and OAuthToken.objects.filter(
            user_id=request.user.pk, status=OAuthToken.Status.ACTIVE
        ).exists()
    )


def _hide_callback_secrets(request: HttpRequest) -> None:
    """Once read, mask the code and the state in the request itself. Django's error reports
    show the query string (the request URL, the GET section, META, every frame's ``request``)
    whatever sensitive_variables says, and so do request loggers and error trackers that read
    the WSGI environ; all of them see the masked copy."""
    masked = request.GET.copy()
    for name in CALLBACK_SECRETS:
        if name in masked:
            masked.setlist(name, [MASK] * len(masked.getlist(name)))
    # A plain QueryDict where Django puts an immutable one: nothing after this writes to it.
    request.GET = masked  # type: ignore[assignment]
    query = masked.urlencode(safe="*")
    request.META["QUERY_STRING"] = query
    # The request target as the server received it, query and all: RAW_URI (gunicorn),
    # REQUEST_URI (uWSGI, mod_wsgi).
    for key in RAW_REQUEST_TARGETS:
        target = request.META.get(key)
        if isinstance(target, str) and "?" in target:
            request.META[key] = f"{target.split('?', 1)[0]}?{query}"


def _check_issuer(received: list[str]) -> None:
    """RFC 9207: an ``iss`` on the callback must be exactly the configured issuer. A callback
    without one is accepted, as neither Frame.io server sends it."""
    expected = conf.issuer
    if not received or expected is None:
        # Nothing to compare with: a preset that publishes no issuer, or AUTHORIZE_URL
        # pointed elsewhere without ISSUER (check W009).
        return
    if received == [expected]:
        return
    logger.warning(
        "Frame.io callback refused: iss %r is not the configured issuer %r",
        [_as_logged_issuer(value) for value in received[:3]],
        expected,
    )
    raise refusals.Refused(
        "wrong_issuer",
        _(
            "This answer did not come from the Frame.io server this site uses, so it was "
            "refused and nothing was connected."
        ),
    )


def _as_logged_issuer(value: str) -> str:
    # An issuer is a URL and no secret; anything else in a query parameter is not logged.
    if _ISSUER_SHAPE.fullmatch(value):
        return value
    return "(not an https URL)"


_ISSUER_SHAPE = re.compile(r"https?://[\w.:/-]{1,200}")


@sensitive_variables()
def _complete(request: HttpRequest, flow: PendingFlow, code: str) -> HttpResponse:
    if not flow.started_by(request.user):
        # Someone else's flow, or one started before a sign-in or sign-out here. Refused
        # before the exchange: the code is never redeemed, so no grant exists to give back.
        logger.warning("Frame.io callback refused: the flow was not started by the current visitor")
        raise refusals.Refused(
            "other_user",
            _(
                "This Frame.io sign-in was started by someone else, or before you signed in "
                "or out here, so nothing was connected. Start again if you meant to."
            ),
            status=403,
        )
    if not code:
        raise refusals.Refused("missing_code", _("Frame.io sent no authorization code."))
    try:
        tokens, info = services.exchange_code(
            code, redirect_uri=flow.redirect_uri, code_verifier=flow.verifier
        )
    except ProviderUnavailable as exc:
        logger.warning("code exchange failed: %s", exc)
        raise refusals.Refused(
            "unavailable", _("Frame.io could not be reached; please try again."), status=502
        ) from exc
    except UnusableProviderValue as exc:
        raise refusals.for_unusable_value(exc) from exc
    except FrameioOAuthError as exc:
        logger.warning("code exchange refused: %s", exc)
        # invalid_grant (a stale or reused code) is the request's problem, a 400 that pages
        # nobody; anything else (invalid_client, a redirect_uri mismatch) breaks every sign-in.
        raise refusals.Refused(
            "exchange_failed",
            _("Frame.io did not accept the sign-in; please try again."),
            status=400 if isinstance(exc, ReauthorizationRequired) else 502,
        ) from exc
    current = request.user if request.user.is_authenticated else None
    try:
        user = services.connect_or_sign_in(current, tokens, info)
    except UnusableProviderValue as exc:
        raise refusals.for_unusable_value(exc) from exc
    except GrantRefused as exc:
        raise refusals.for_grant(exc) from exc
    if current is None:
        auth_login(request, user, backend=_login_backend())  # type: ignore[arg-type]
    return HttpResponseRedirect(flow.next or reverse("frameio_oauth:connected"))


@never_cache
# Its buttons connect and disconnect: no other site may frame it.
@xframe_options_deny
@login_required
def connected(request: HttpRequest) -> HttpResponse:
    row = OAuthToken.objects.filter(user_id=request.user.pk or 0).first()
    connection = pages.connection_of(row)
    # A row whose revocation is pending is no connection: ``token`` stays None for it, as
    # templates written before ``connection`` expect.
    token = None if connection is pages.Connection.REVOCATION_PENDING else row
    return pages.page(
        request, "frameio_oauth/connected.html", {"token": token, "connection": connection}
    )


@never_cache
# Explicit, as for login: a cross-site POST must not end a connection, with or without the
# project's CsrfViewMiddleware.
@csrf_protect
@require_http_methods(["GET", "POST"])
@login_required
# The revocation is an HTTP call: under ATOMIC_REQUESTS the row's removal would otherwise wait
# on the view's transaction, and a rollback would keep a row whose grant is already revoked.
@non_atomic_requests_everywhere
def disconnect(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        # Only a POST disconnects. A GET arrives after a POST whose session had expired: the
        # login page sends the user back here; the connected page holds the button.
        return HttpResponseRedirect(reverse("frameio_oauth:connected"))
    try:
        result = services.disconnect(request.user)  # type: ignore[arg-type]  # login_required
    except NotConnected:
        messages.info(request, _("Frame.io was not connected."))
    else:
        if result.revoked_at_provider:
            messages.success(request, _("Frame.io is disconnected."))
        elif result.issued_elsewhere:
            messages.info(
                request,
                _(
                    "Frame.io is disconnected here. This connection was made with Frame.io's "
                    "previous sign-in, so nothing was sent to Frame.io; you can remove the app "
                    "in your Frame.io account settings."
                ),
            )
        elif result.pending:
            messages.warning(
                request,
                _(
                    "Frame.io is disconnected here. Frame.io has not confirmed that it "
                    "revoked the access yet; that will be retried automatically."
                ),
            )
        else:
            messages.warning(
                request,
                _(
                    "Frame.io could not confirm the revocation; the token was removed here. "
                    "You can also remove this app in your Frame.io account settings."
                ),
            )
    return HttpResponseRedirect(
        _safe_next(request, request.POST.get("next")) or reverse("frameio_oauth:connected")
    )


@method_decorator(xframe_options_deny, name="dispatch")
class SignInView(LoginView):
    """A sign-in page for a project that has none: "Sign in with Frame.io" and the site's
    password form. Optional: set ``LOGIN_URL = "frameio_oauth:sign_in"`` to use it."""

    template_name = "frameio_oauth/sign_in.html"

    def get_default_redirect_url(self) -> str:
        # Django's own default, /accounts/profile/, is a 404 in a new project.
        if settings.LOGIN_REDIRECT_URL != global_settings.LOGIN_REDIRECT_URL:
            return super().get_default_redirect_url()
        return reverse("frameio_oauth:connected")

    def get_form(self, form_class: type[AuthenticationForm] | None = None) -> AuthenticationForm:
        form = super().get_form(form_class)
        # Django focuses the username; here the keyboard starts at the top, Frame.io first.
        form.fields["username"].widget.attrs.pop("autofocus", None)
        return form

    def get_context_data(self, **kwargs: object) -> dict[str, object]:
        context = super().get_context_data(**kwargs)
        context.update(
            back_url=pages.site_url(),
            site_url=pages.site_url(),
            allow_signup=conf.allow_signup,
        )
        return context


sign_in = SignInView.as_view()


def _warn_if_other_host(request: HttpRequest, redirect_uri: str) -> None:
    # A callback on another host (localhost vs 127.0.0.1, www.) arrives without this host's
    # session cookie, and every sign-in ends as "unknown state" with nothing to say why.
    callback_host = urlsplit(redirect_uri).netloc.lower()
    if callback_host and callback_host != request.get_host().lower():
        logger.warning(
            "REDIRECT_URI points at %s but this sign-in started on %s: the session cookie will "
            "not reach the callback, so the sign-in will fail (unknown_state)",
            callback_host,
            request.get_host(),
        )


def _login_backend() -> str:
    """The first configured backend that can load a user back from the session (django-axes'
    standalone backend, often listed first, cannot)."""
    for path in settings.AUTHENTICATION_BACKENDS:
        if hasattr(import_string(path), "get_user"):
            return str(path)
    return str(settings.AUTHENTICATION_BACKENDS[0])


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""
