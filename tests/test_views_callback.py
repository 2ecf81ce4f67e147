"""The callback (views.callback): it connects or signs in, and every way it can go wrong ends
on the error page with a code and a status that says whose fault it is, storing nothing. The
state's own checks are in test_flows.py."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory, override_settings
from django.urls import resolve

from frameio_oauth import services, signals, views
from frameio_oauth.exceptions import GrantRefused
from frameio_oauth.models import OAuthToken
from frameio_oauth.views import SESSION_KEY
from tests.support.callback import ME, TOKENS, assert_refused, callback, provider_answers, start
from tests.support.frameio import REVOKE_URL, TOKEN_URL, USERINFO_URL, revoked_tokens
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.signups import taken_once_looked_up

pytestmark = pytest.mark.django_db


# --- a good callback --------------------------------------------------------------------------


def test_callback_connects_the_signed_in_user_and_redirects_to_next(
    signed_in: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    state = start(signed_in, "/after/")
    verifier = signed_in.session[SESSION_KEY][state]["verifier"]
    response = callback(signed_in, state=state, code="C")
    assert response.status_code == 302
    assert response["Location"] == "/after/"
    assert response["Referrer-Policy"] == "no-referrer"
    token = OAuthToken.objects.get(user=user)
    assert (token.access_token, token.refresh_token) == ("AT-1", "RT-1")
    assert token.provider_user_id == "fio-42"
    assert parse_qs(provider_http.calls[0].request.body)["code_verifier"] == [verifier]


def test_callback_without_next_goes_to_the_connected_page(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    response = callback(signed_in, state=start(signed_in), code="C")
    assert response["Location"] == "/frameio/connected/"


def test_callback_sends_token_obtained_after_the_commit(
    signed_in: Client,
    user: Any,
    provider_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Any,
) -> None:
    provider_answers(provider_http)
    received: list[dict[str, Any]] = []
    signals.token_obtained.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=False) as pending:
            callback(signed_in, state=start(signed_in), code="C")
        assert received == []  # nothing before the commit
        for run in pending:
            run()
    finally:
        signals.token_obtained.disconnect(dispatch_uid="t")
    assert [(r["user"], r["created"]) for r in received] == [(user, True)]


@pytest.mark.parametrize("evil", ["https://evil.example", "//evil.example"])
def test_callback_never_redirects_off_site(
    signed_in: Client, provider_http: responses.RequestsMock, evil: str
) -> None:
    provider_answers(provider_http)
    response = callback(signed_in, state=start(signed_in, evil), code="C")
    assert response.status_code == 302
    assert response["Location"] == "/frameio/connected/"


class StandaloneBackend:
    """Like django-axes' AxesStandaloneBackend: authenticates nothing, loads no user."""

    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None


def test_sign_in_records_a_backend_that_can_load_the_user(
    client: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, provider_user_id="fio-42")
    provider_answers(provider_http)
    backends = [
        "tests.test_views_callback.StandaloneBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    with override_settings(AUTHENTICATION_BACKENDS=backends):
        callback(client, state=start(client), code="C")
        assert client.session["_auth_user_backend"] == backends[1]
        assert client.get("/frameio/connected/").status_code == 200


def test_an_anonymous_user_is_signed_in_by_provider_user_id(
    client: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, provider_user_id="fio-42", access_token="old")
    provider_answers(provider_http)
    response = callback(client, state=start(client), code="C")
    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == user.pk
    assert OAuthToken.objects.get(user=user).access_token == "AT-1"


# --- sign-up ----------------------------------------------------------------------------------


def test_an_anonymous_user_without_a_link_is_refused_when_signup_is_off(
    client: Client, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    provider_http.post(REVOKE_URL, body="")
    response = callback(client, state=start(client), code="C")
    assert response.status_code == 403
    assert b"Sign in first" in response.content
    assert not OAuthToken.objects.exists()
    # The grant nobody will use is handed back to the provider.
    revoked = [c for c in provider_http.calls if c.request.url == REVOKE_URL]
    assert parse_qs(revoked[0].request.body)["token"] == ["RT-1"]


def test_an_anonymous_user_gets_an_account_when_signup_is_on(
    client: Client, provider_http: responses.RequestsMock, django_user_model: Any
) -> None:
    provider_answers(provider_http)
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True}):
        response = callback(client, state=start(client), code="C")
    assert response.status_code == 302
    created = django_user_model.objects.get(username="alice")
    assert created.email == "alice@frame.example"
    assert created.frameio_token.provider_user_id == "fio-42"


def test_signup_never_links_by_email_to_an_existing_account(
    client: Client, user: Any, provider_http: responses.RequestsMock, django_user_model: Any
) -> None:
    user.email = ME["email"]
    user.save()
    provider_answers(provider_http)
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True}):
        callback(client, state=start(client), code="C")
    assert OAuthToken.objects.get().user != user
    assert django_user_model.objects.count() == 2


def test_two_sign_ups_that_pick_the_same_free_name_both_get_an_account(
    client: Client, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    state = start(client)
    # Another sign-up takes "alice" between this one's lookup of it and its save.
    with (
        override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True}),
        taken_once_looked_up(["alice"]) as taken,
    ):
        response = callback(client, state=state, code="C")
    assert taken == ["alice"]
    assert response.status_code == 302
    assert OAuthToken.objects.get().user.username == "alice-2"


def test_signup_with_email_usernames_refuses_an_address_that_has_an_account(
    client: Client,
    user: Any,
    provider_http: responses.RequestsMock,
    django_user_model: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(django_user_model, "USERNAME_FIELD", "email")
    user.email = ME["email"]
    user.save()
    provider_answers(provider_http)
    provider_http.post(REVOKE_URL, body="")
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True}):
        response = callback(client, state=start(client), code="C")
    assert response.status_code == 409
    assert b"already exists here" in response.content
    assert not OAuthToken.objects.exists()
    assert django_user_model.objects.count() == 1


def test_signup_with_email_usernames_names_the_account_by_the_address(
    client: Client,
    provider_http: responses.RequestsMock,
    django_user_model: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(django_user_model, "USERNAME_FIELD", "email")
    provider_answers(provider_http)
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True}):
        response = callback(client, state=start(client), code="C")
    assert response.status_code == 302
    assert OAuthToken.objects.get().user.email == ME["email"]


# --- a refused grant --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (GrantRefused.Reason.NO_ACCOUNT, 403),
        (GrantRefused.Reason.LINKED_ELSEWHERE, 409),
        (GrantRefused.Reason.INACTIVE, 403),
        (GrantRefused.Reason.NO_EMAIL, 403),
        (GrantRefused.Reason.EMAIL_TAKEN, 409),
        (GrantRefused.Reason.SIGNUP_CONFLICT, 409),
        (GrantRefused.Reason.BUSY, 409),
    ],
    ids=lambda value: value.value if isinstance(value, GrantRefused.Reason) else str(value),
)
def test_a_refused_grant_ends_on_the_error_page_with_its_reason_and_status(
    client: Client,
    provider_http: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
    reason: GrantRefused.Reason,
    status: int,
) -> None:
    # 403: this visitor may not have it; 409: it collides with what is stored here.
    def refused(*args: Any) -> Any:
        raise GrantRefused(reason, "refused by the services")

    monkeypatch.setattr(services, "connect_or_sign_in", refused)
    provider_answers(provider_http)
    assert_refused(callback(client, state=start(client), code="C"), reason.value, status)


def test_a_frameio_account_linked_to_another_user_is_refused(
    signed_in: Client, other_user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(other_user, provider_user_id="fio-42", access_token="theirs")
    provider_answers(provider_http)
    response = callback(signed_in, state=start(signed_in), code="C")
    assert response.status_code == 409
    assert OAuthToken.objects.get().access_token == "theirs"


def test_a_racing_first_connect_is_refused_cleanly_not_with_a_500(
    signed_in: Client, user: Any, provider_http: responses.RequestsMock, monkeypatch: Any
) -> None:
    from django.db import IntegrityError

    provider_answers(provider_http)

    def lost_the_race(*args: Any, **kwargs: Any) -> None:
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(OAuthToken, "save", lost_the_race)
    response = callback(signed_in, state=start(signed_in), code="C")
    assert response.status_code == 409
    assert b'data-error-code="busy"' in response.content


# --- errors from Frame.io ---------------------------------------------------------------------


def test_callback_with_access_denied_shows_a_friendly_page(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    state = start(signed_in)
    response = callback(signed_in, state=state, error="access_denied")
    assert_refused(response, "access_denied")
    assert b"You declined access" in response.content
    assert state not in signed_in.session[SESSION_KEY]


def test_callback_with_an_unknown_provider_error_is_refused(signed_in: Client) -> None:
    response = callback(signed_in, state=start(signed_in), error="<script>", error_description="x")
    assert_refused(response, "provider_error")
    assert b"<script>" not in response.content


def test_callback_with_missing_code_is_rejected(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    assert_refused(callback(signed_in, state=start(signed_in)), "missing_code")
    assert len(provider_http.calls) == 0


def test_callback_when_the_exchange_fails_stores_nothing(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    # 400: a stale or reused code is the request's problem; 502 is kept for an outage (below).
    assert_refused(callback(signed_in, state=start(signed_in), code="C"), "exchange_failed", 400)


def test_callback_refused_for_the_clients_credentials_is_a_502(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    # A rotated CLIENT_SECRET fails every sign-in: that must look like an outage.
    provider_http.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    assert_refused(callback(signed_in, state=start(signed_in), code="C"), "exchange_failed", 502)


def test_callback_when_the_provider_is_down_stores_nothing(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=503, body="<html>down</html>")
    assert_refused(callback(signed_in, state=start(signed_in), code="C"), "unavailable", 502)


def test_callback_when_user_info_fails_stores_nothing(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=TOKENS)
    provider_http.get(USERINFO_URL, status=500)
    assert_refused(callback(signed_in, state=start(signed_in), code="C"), "unavailable", 502)


def test_a_grant_whose_user_info_cannot_be_fetched_is_given_back(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=TOKENS)
    provider_http.get(USERINFO_URL, status=503)
    provider_http.post(REVOKE_URL, body="")
    response = callback(signed_in, state=start(signed_in), code="C")
    assert response.status_code == 502
    assert not OAuthToken.objects.exists()
    revoked = [c for c in provider_http.calls if c.request.url == REVOKE_URL]
    assert parse_qs(revoked[0].request.body)["token"] == ["RT-1"]


def test_a_grant_whose_user_info_cannot_be_fetched_is_kept_while_a_live_grant_is_stored(
    signed_in: Client,
    other_user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
) -> None:
    # It may be the same Frame.io account's: revoking it could end other_user's grant too.
    make_token(other_user)
    provider_http.post(TOKEN_URL, json=TOKENS)
    provider_http.get(USERINFO_URL, status=503)
    provider_http.post(REVOKE_URL, body="")
    response = callback(signed_in, state=start(signed_in), code="C")
    assert response.status_code == 502
    assert not [c for c in provider_http.calls if c.request.url == REVOKE_URL]


# --- unusable account details -----------------------------------------------------------------


def sign_in_with(client: Any, mock: responses.RequestsMock, me: dict[str, Any]) -> Any:
    mock.post(TOKEN_URL, json=TOKENS)
    mock.get(USERINFO_URL, json={**ME, **me})
    mock.post(REVOKE_URL, body="")
    state = start(client)
    verifier = client.session["frameio_oauth_flows"][state]["verifier"]
    return client.get("/frameio/callback/", {"state": state, "code": "CODE-7"}), verifier


@pytest.mark.parametrize(
    "me",
    [{"id": "x" * 300}, {"id": "fio\x00"}],
    ids=["id-too-long", "nul-in-id"],
)
def test_a_callback_with_unusable_account_details_gets_a_friendly_502_and_stores_nothing(
    client: Any, user: Any, provider_http: responses.RequestsMock, me: dict[str, Any]
) -> None:
    client.force_login(user)
    response, _ = sign_in_with(client, provider_http, me)
    assert response.status_code == 502
    assert b"cannot store" in response.content
    assert b"Traceback" not in response.content
    assert not OAuthToken.objects.exists()
    assert revoked_tokens(provider_http) == ["RT-1"]


def test_a_sign_up_with_unusable_account_details_creates_no_user(
    client: Any, provider_http: responses.RequestsMock, django_user_model: Any
) -> None:
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True}):
        response, _ = sign_in_with(client, provider_http, {"id": "x" * 300})
    assert response.status_code == 502
    assert not django_user_model.objects.exists()
    assert "_auth_user_id" not in client.session


def test_with_debug_on_an_unusable_answer_shows_no_code_or_verifier(
    client: Any, user: Any, provider_http: responses.RequestsMock, settings: Any
) -> None:
    settings.DEBUG = True
    client.force_login(user)
    response, verifier = sign_in_with(client, provider_http, {"id": "x" * 300})
    page = response.content.decode()
    assert response.status_code == 502
    assert "CODE-7" not in page
    assert verifier not in page
    assert "RT-1" not in page and "AT-1" not in page


# --- the issuer (RFC 9207) --------------------------------------------------------------------


ISSUER = "https://issuer.frameio.example"
WITH_ISSUER = {**FRAMEIO_OAUTH, "ISSUER": ISSUER}


@override_settings(FRAMEIO_OAUTH=WITH_ISSUER)
def test_a_callback_from_another_issuer_is_refused_before_any_exchange(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    response = callback(signed_in, state=start(signed_in), code="C", iss="https://evil.example")
    assert_refused(response, "wrong_issuer")
    assert len(provider_http.calls) == 0


@override_settings(FRAMEIO_OAUTH=WITH_ISSUER)
def test_a_callback_from_the_configured_issuer_connects(
    signed_in: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    response = callback(signed_in, state=start(signed_in), code="C", iss=ISSUER)
    assert response.status_code == 302
    assert OAuthToken.objects.get().user == user


@override_settings(FRAMEIO_OAUTH=WITH_ISSUER)
def test_a_callback_without_iss_is_accepted(
    signed_in: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    assert callback(signed_in, state=start(signed_in), code="C").status_code == 302
    assert OAuthToken.objects.filter(user=user).exists()


@override_settings(FRAMEIO_OAUTH=WITH_ISSUER)
def test_the_issuer_is_compared_exactly_so_a_trailing_slash_is_another_issuer(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    response = callback(signed_in, state=start(signed_in), code="C", iss=f"{ISSUER}/")
    assert_refused(response, "wrong_issuer")
    assert len(provider_http.calls) == 0


@override_settings(FRAMEIO_OAUTH=WITH_ISSUER)
@pytest.mark.parametrize(
    "query",
    [
        "state={state}&code=C&iss={issuer}&iss=https://evil.example",
        "state={state}&code=C&code=D",
        "state={state}&state={state}&code=C",
        "state={state}&code=C&error=access_denied&error=server_error",
    ],
    ids=["iss", "code", "state", "error"],
)
def test_a_callback_that_repeats_a_parameter_is_refused_before_any_exchange(
    signed_in: Client, user: Any, provider_http: responses.RequestsMock, query: str
) -> None:
    provider_answers(provider_http)
    state = start(signed_in)
    response = signed_in.get(f"/frameio/callback/?{query.format(state=state, issuer=ISSUER)}")
    assert_refused(response, "repeated_parameter")
    assert len(provider_http.calls) == 0
    assert not OAuthToken.objects.exists()


@override_settings(FRAMEIO_OAUTH=WITH_ISSUER)
def test_an_error_callback_from_another_issuer_is_refused_as_such_and_spends_the_state(
    signed_in: Client,
) -> None:
    state = start(signed_in)
    response = callback(signed_in, state=state, error="access_denied", iss="https://evil.example")
    assert_refused(response, "wrong_issuer")
    assert state not in signed_in.session[SESSION_KEY]


@override_settings(FRAMEIO_OAUTH=WITH_ISSUER)
def test_a_refused_issuer_spends_the_state(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    state = start(signed_in)
    callback(signed_in, state=state, code="C", iss="https://evil.example")
    assert_refused(callback(signed_in, state=state, code="C", iss=ISSUER), "unknown_state")
    assert len(provider_http.calls) == 0


@override_settings(FRAMEIO_OAUTH=WITH_ISSUER)
def test_the_received_iss_is_never_echoed_into_the_page(signed_in: Client) -> None:
    evil = '"><script>alert(1)</script>'
    response = callback(signed_in, state=start(signed_in), code="C", iss=evil)
    assert_refused(response, "wrong_issuer")
    assert b"<script>" not in response.content
    assert b"alert(1)" not in response.content


def test_the_adobe_ims_preset_checks_iss_against_the_issuer_ims_publishes(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_http.post("https://ims-na1.adobelogin.com/ims/token/v3", json=TOKENS)
    provider_http.get("https://api.frame.io/v4/me", json={"data": ME})
    config = {**FRAMEIO_OAUTH, "PROVIDER": "adobe-ims", "SCOPES": ["openid", "offline_access"]}
    with override_settings(FRAMEIO_OAUTH=config):
        refused = callback(signed_in, state=start(signed_in), code="C", iss="https://evil.example")
        accepted = callback(
            signed_in, state=start(signed_in), code="C", iss="https://ims-na1.adobelogin.com"
        )
    assert b'data-error-code="wrong_issuer"' in refused.content
    assert accepted.status_code == 302
    assert len(provider_http.calls) == 2  # one exchange and its user info, for the second


def test_another_authorize_url_without_issuer_cannot_check_iss_and_accepts_it(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    # The preset's issuer names the preset's server, not this one; check W009 says so.
    provider_answers(provider_http)
    config = {**FRAMEIO_OAUTH, "AUTHORIZE_URL": "https://idp.example/oauth2/auth"}
    with override_settings(FRAMEIO_OAUTH=config):
        response = callback(signed_in, state=start(signed_in), code="C", iss="https://idp.example")
    assert response.status_code == 302


def test_another_authorize_url_with_its_issuer_checks_iss(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    config = {
        **FRAMEIO_OAUTH,
        "AUTHORIZE_URL": "https://idp.example/oauth2/auth",
        "ISSUER": "https://idp.example",
    }
    with override_settings(FRAMEIO_OAUTH=config):
        response = callback(signed_in, state=start(signed_in), code="C", iss=ISSUER)
    assert_refused(response, "wrong_issuer")
    assert len(provider_http.calls) == 0


# --- the request and the page -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["RAW_URI", "REQUEST_URI"])
def test_the_callback_masks_the_code_and_state_in_the_servers_raw_request_target(
    key: str,
) -> None:
    query = "code=SECRET-CODE-123&state=STATE-XYZ"
    request = RequestFactory().get(
        f"/frameio/callback/?{query}", **{key: f"/frameio/callback/?{query}"}
    )
    request.session = SessionStore()
    request.user = AnonymousUser()
    views.callback(request)
    assert request.META[key] == "/frameio/callback/?code=********&state=********"


@override_settings(LANGUAGE_CODE="de")
def test_the_pages_declare_the_language_they_are_served_in(signed_in: Client) -> None:
    # Without the i18n context processor too, which startproject does not add.
    response = callback(signed_in, state="forged", code="C")
    assert b'<html lang="de">' in response.content


@pytest.mark.parametrize("path", ["/frameio/callback/", "/frameio/disconnect/"])
def test_the_views_that_call_frameio_run_outside_request_transactions_on_every_database(
    path: str,
) -> None:
    view = resolve(path).func
    assert view._non_atomic_requests == set(settings.DATABASES)  # type: ignore[attr-defined]


# --- what the error page offers next ----------------------------------------------------------


def refused_with(
    client: Client,
    mock: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
    reason: GrantRefused.Reason,
    next_url: str | None = None,
) -> Any:
    def refused(*args: Any) -> Any:
        raise GrantRefused(reason, "refused by the services")

    monkeypatch.setattr(services, "connect_or_sign_in", refused)
    provider_answers(mock)
    return callback(client, state=start(client, next_url), code="C")


def link(response: Any, element_id: str) -> str | None:
    match = re.search(rf'href="([^"]*)" id="{element_id}"', response.content.decode())
    return html.unescape(match.group(1)) if match else None


@pytest.mark.parametrize(
    "reason",
    [
        GrantRefused.Reason.NO_ACCOUNT,
        GrantRefused.Reason.EMAIL_TAKEN,
        GrantRefused.Reason.SIGNUP_CONFLICT,
    ],
    ids=lambda reason: reason.value,
)
def test_sign_in_first_leads_to_the_sites_sign_in_then_back_to_connect_keeping_next(
    client: Client,
    provider_http: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
    reason: GrantRefused.Reason,
) -> None:
    response = refused_with(client, provider_http, monkeypatch, reason, "/after/?tab=1")
    target = link(response, "frameio-retry")
    assert target is not None
    parts = urlsplit(target)
    assert parts.path == "/accounts/login/"
    then = parse_qs(parts.query)["next"]
    assert then == ["/frameio/login/?next=%2Fafter%2F%3Ftab%3D1"]
    assert b">Sign in</a>" in response.content


def test_sign_in_first_keeps_the_query_the_sign_in_url_already_has(
    client: Client, provider_http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with override_settings(LOGIN_URL="/signin/?via=frameio"):
        response = refused_with(client, provider_http, monkeypatch, GrantRefused.Reason.NO_ACCOUNT)
    target = link(response, "frameio-retry")
    assert target is not None
    assert parse_qs(urlsplit(target).query) == {"via": ["frameio"], "next": ["/frameio/login/"]}


def test_sign_in_first_offers_to_try_again_when_the_sites_sign_in_is_this_start_page(
    client: Client, provider_http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A project whose only sign-in is Frame.io: a loop back to the start page cannot help.
    with override_settings(LOGIN_URL="frameio_oauth:login"):
        response = refused_with(client, provider_http, monkeypatch, GrantRefused.Reason.NO_ACCOUNT)
    assert link(response, "frameio-retry") == "/frameio/login/"
    assert b">Try again</a>" in response.content


def test_a_disabled_account_is_offered_no_retry_only_the_way_back(
    client: Client, provider_http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = refused_with(
        client, provider_http, monkeypatch, GrantRefused.Reason.INACTIVE, "/after/"
    )
    assert link(response, "frameio-retry") is None
    assert link(response, "frameio-back") == "/after/"


def test_the_error_page_leads_back_to_the_site_without_a_next(client: Client) -> None:
    response = callback(client, state="forged", code="C")
    assert link(response, "frameio-back") == "/"


def test_the_error_page_of_a_sign_in_says_sign_in_and_of_a_connect_says_connect(
    signed_in: Client,
) -> None:
    anonymous = Client().get("/frameio/callback/", {"state": "forged"})
    connect = signed_in.get("/frameio/callback/", {"state": "forged"})
    assert b"<h1>We couldn't sign you in with Frame.io</h1>" in anonymous.content
    assert b"<h1>We couldn't connect Frame.io</h1>" in connect.content


def test_the_error_page_shows_the_visitors_words_not_the_services_message(
    client: Client, provider_http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = refused_with(client, provider_http, monkeypatch, GrantRefused.Reason.INACTIVE)
    assert b"refused by the services" not in response.content
    assert b"This account is disabled." in response.content
