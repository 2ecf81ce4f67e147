from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.test import Client, RequestFactory, override_settings
from django.urls import resolve

from frameio_oauth import services, signals, views
from frameio_oauth.exceptions import GrantRefused, NotConnected
from frameio_oauth.models import OAuthToken
from frameio_oauth.views import SESSION_KEY
from tests.support.frameio import REVOKE_URL, TOKEN_URL, USERINFO_URL
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.signups import taken_once_looked_up

pytestmark = pytest.mark.django_db

TOKENS = {"access_token": "AT-1", "refresh_token": "RT-1", "expires_in": 3600}
ME = {"id": "fio-42", "email": "alice@frame.example", "name": "Alice"}


def start(client: Client, next_url: str | None = None) -> str:
    """Press the start page's button; return the state the flow put in the authorize URL."""
    response = client.post("/frameio/login/", {"next": next_url} if next_url else {})
    assert response.status_code == 302
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


def provider_answers(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json=TOKENS)
    mock.get(USERINFO_URL, json=ME)


def callback(client: Client, **params: str) -> Any:
    return client.get("/frameio/callback/", params)


@pytest.fixture
def signed_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


# --- login ----------------------------------------------------------------------------------


def test_login_redirects_to_the_provider_and_keeps_state_and_verifier_in_the_session(
    signed_in: Client,
) -> None:
    state = start(signed_in, "/after/")
    flow = signed_in.session[SESSION_KEY][state]
    assert flow["next"] == "/after/"
    assert 43 <= len(flow["verifier"]) <= 128
    assert flow["redirect_uri"] == "http://testserver/frameio/callback/"


@pytest.mark.parametrize("evil", ["https://evil.example/", "//evil.example", "javascript:x"])
def test_login_drops_an_offsite_next(signed_in: Client, evil: str) -> None:
    state = start(signed_in, evil)
    assert signed_in.session[SESSION_KEY][state]["next"] == ""


def test_login_keeps_only_a_few_pending_flows(signed_in: Client) -> None:
    states = [start(signed_in) for _ in range(8)]
    assert set(signed_in.session[SESSION_KEY]) == set(states[-5:])


def test_configured_redirect_uri_is_used_in_both_requests(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    fixed = "https://site.example/frameio/callback/"
    provider_answers(provider_http)
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "REDIRECT_URI": fixed}):
        state = start(signed_in)
        callback(signed_in, state=state, code="C")
    sent = parse_qs(provider_http.calls[0].request.body)
    assert sent["redirect_uri"] == [fixed]


def test_login_warns_when_the_redirect_uri_is_on_another_host(
    signed_in: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # The session cookie of 127.0.0.1 never reaches a callback on localhost.
    elsewhere = "http://localhost:8000/frameio/callback/"
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "REDIRECT_URI": elsewhere}):
        start(signed_in)
    assert "REDIRECT_URI points at localhost:8000 but this sign-in started on testserver" in (
        caplog.text
    )


def test_login_on_the_redirect_uri_host_does_not_warn(
    signed_in: Client, caplog: pytest.LogCaptureFixture
) -> None:
    start(signed_in)
    assert "REDIRECT_URI points at" not in caplog.text


# --- a good callback ------------------------------------------------------------------------


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


class StandaloneBackend:
    """Like django-axes' AxesStandaloneBackend: authenticates nothing, loads no user."""

    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None


def test_sign_in_records_a_backend_that_can_load_the_user(
    client: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, provider_user_id="fio-42")
    provider_answers(provider_http)
    backends = ["tests.test_views.StandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
    with override_settings(AUTHENTICATION_BACKENDS=backends):
        callback(client, state=start(client), code="C")
        assert client.session["_auth_user_backend"] == backends[1]
        assert client.get("/frameio/connected/").status_code == 200


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


def test_an_anonymous_user_is_signed_in_by_provider_user_id(
    client: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, provider_user_id="fio-42", access_token="old")
    provider_answers(provider_http)
    response = callback(client, state=start(client), code="C")
    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == user.pk
    assert OAuthToken.objects.get(user=user).access_token == "AT-1"


def test_a_frameio_account_linked_to_another_user_is_refused(
    signed_in: Client, other_user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(other_user, provider_user_id="fio-42", access_token="theirs")
    provider_answers(provider_http)
    response = callback(signed_in, state=start(signed_in), code="C")
    assert response.status_code == 409
    assert OAuthToken.objects.get().access_token == "theirs"


# --- bad callbacks: each one stores nothing ---------------------------------------------------


def assert_refused(response: Any, code: str, status: int = 400) -> None:
    assert response.status_code == status
    assert f'data-error-code="{code}"'.encode() in response.content
    assert response["Referrer-Policy"] == "no-referrer"
    assert not OAuthToken.objects.exists()


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


def test_callback_with_missing_state_is_rejected(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    start(signed_in)
    assert_refused(callback(signed_in, code="C"), "missing_state")
    assert len(provider_http.calls) == 0


def test_callback_with_unknown_state_is_rejected(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    start(signed_in)
    assert_refused(callback(signed_in, state="forged", code="C"), "unknown_state")
    assert len(provider_http.calls) == 0


def test_a_used_state_coming_back_for_a_connected_user_leads_to_the_connected_page(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    # Connect, then the Back button to the consent page, and "Authorize" again.
    provider_answers(provider_http)
    state = start(signed_in)
    assert callback(signed_in, state=state, code="C").status_code == 302
    response = callback(signed_in, state=state, code="C2")
    assert response.status_code == 302
    assert response["Location"] == "/frameio/connected/"
    assert len(provider_http.calls) == 2  # the first exchange and its user info, no more
    page = signed_in.get(response["Location"])
    assert b"Frame.io is already connected." in page.content


def test_a_never_used_state_for_a_connected_user_is_still_an_error(
    signed_in: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # Such as a flow to switch accounts that newer flows evicted: that attempt did fail.
    make_token(user)
    response = callback(signed_in, state="never-issued", code="C")
    assert response.status_code == 400
    assert b'data-error-code="unknown_state"' in response.content


def test_callback_with_reused_state_is_rejected(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_request"})
    state = start(signed_in)
    callback(signed_in, state=state, code="C")
    assert_refused(callback(signed_in, state=state, code="C2"), "unknown_state")
    assert len(provider_http.calls) == 1


def test_callback_with_a_replayed_code_is_rejected_without_a_second_exchange(
    signed_in: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    state = start(signed_in)
    assert callback(signed_in, state=state, code="C").status_code == 302
    OAuthToken.objects.all().delete()
    assert_refused(callback(signed_in, state=state, code="C"), "unknown_state")
    assert len([c for c in provider_http.calls if c.request.url == TOKEN_URL]) == 1


def test_callback_with_state_from_another_session_is_rejected(
    signed_in: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    victim_state = start(Client())
    assert_refused(callback(signed_in, state=victim_state, code="C"), "unknown_state")
    assert len(provider_http.calls) == 0


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


def test_callback_with_an_expired_flow_is_rejected(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    state = start(signed_in)
    session = signed_in.session
    session[SESSION_KEY][state]["created"] -= 3600
    session.save()
    assert_refused(callback(signed_in, state=state, code="C"), "expired_state")


@pytest.mark.parametrize("evil", ["https://evil.example", "//evil.example"])
def test_callback_never_redirects_off_site(
    signed_in: Client, provider_http: responses.RequestsMock, evil: str
) -> None:
    provider_answers(provider_http)
    response = callback(signed_in, state=start(signed_in, evil), code="C")
    assert response.status_code == 302
    assert response["Location"] == "/frameio/connected/"


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


# --- connected page and disconnect -----------------------------------------------------------


def test_connected_page_shows_the_account_but_no_secret(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    make_token(user)
    response = signed_in.get("/frameio/connected/")
    assert response.status_code == 200
    assert b"alice@frame.example" in response.content
    assert b"secret" not in response.content


def test_a_get_of_disconnect_leads_to_the_connected_page_and_disconnects_nothing(
    signed_in: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # As after a disconnect POST whose session had expired: login sends the user back here.
    make_token(user)
    response = signed_in.get("/frameio/disconnect/")
    assert response.status_code == 302
    assert response["Location"] == "/frameio/connected/"
    assert OAuthToken.objects.filter(user=user).exists()
    assert len(provider_http.calls) == 0


def test_an_anonymous_disconnect_post_is_sent_to_sign_in_first(client: Client) -> None:
    response = client.post("/frameio/disconnect/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/frameio/disconnect/")


def test_disconnect_checks_csrf(user: Any, make_token: Any) -> None:
    make_token(user)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/frameio/disconnect/").status_code == 403
    assert OAuthToken.objects.filter(user=user).exists()


def test_disconnect_revokes_then_deletes_and_signals(
    signed_in: Client,
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_token(user)
    provider_http.post(REVOKE_URL, body="")
    received: list[dict[str, Any]] = []
    signals.token_revoked.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="r")
    try:
        # token_revoked goes out once the deletion commits.
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_in.post("/frameio/disconnect/")
    finally:
        signals.token_revoked.disconnect(dispatch_uid="r")
    assert response.status_code == 302
    assert parse_qs(provider_http.calls[0].request.body)["token"] == [f"refresh-{user.pk}-secret"]
    assert not OAuthToken.objects.filter(user=user).exists()
    assert received[0]["revoked_at_provider"] is True


def test_disconnect_when_the_provider_refuses_still_removes_and_says_so(
    signed_in: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user)
    provider_http.post(REVOKE_URL, status=400, json={"error": "unsupported_token_type"})
    response = signed_in.post("/frameio/disconnect/", follow=True)
    assert len(provider_http.calls) == 1
    assert not OAuthToken.objects.filter(user=user).exists()
    assert b"could not confirm the revocation" in response.content


def test_disconnect_during_an_outage_disconnects_here_and_keeps_the_grant_to_revoke_later(
    signed_in: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user)
    provider_http.post(REVOKE_URL, status=503)
    response = signed_in.post("/frameio/disconnect/", follow=True)
    assert b"will be retried automatically" in response.content
    pending = OAuthToken.objects.get(user=user)
    assert pending.status == OAuthToken.Status.REVOKED
    assert pending.refresh_token == f"refresh-{user.pk}-secret"
    # Disconnected for every purpose: the connected page and the API say so.
    assert b"alice@frame.example" not in signed_in.get("/frameio/connected/").content
    with pytest.raises(NotConnected):
        services.get_access_token(user)


def test_a_state_spent_by_a_racing_request_is_refused(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    state = start(signed_in)
    # What a concurrent callback with the same session leaves behind once it has passed.
    cache.add("frameio_oauth:spent-state:" + hashlib.sha256(state.encode()).hexdigest(), 1)
    assert_refused(callback(signed_in, state=state, code="C"), "unknown_state")
    assert len(provider_http.calls) == 0


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
