"""The start of a flow (views.login): a GET shows a page with one button, only its
CSRF-checked POST goes to Frame.io. A GET that started the flow let any page connect a
signed-in visitor's account to whatever Frame.io account their browser was signed in to."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client, override_settings

from frameio_oauth.views import SESSION_KEY
from tests.support.callback import callback, provider_answers, start
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.standin import form_fields

pytestmark = pytest.mark.django_db

START = "/frameio/login/"
WITHOUT_CSRF_MIDDLEWARE = [m for m in settings.MIDDLEWARE if "CsrfViewMiddleware" not in m]


def start_form(response: Any) -> dict[str, str]:
    return form_fields(response.content.decode(), form_id="frameio-start-form")


def state_of(redirect: Any) -> str:
    return parse_qs(urlsplit(redirect["Location"]).query)["state"][0]


def test_a_get_of_the_start_url_by_a_signed_in_user_starts_nothing(signed_in: Client) -> None:
    response = signed_in.get(START, {"next": "/after/"})
    assert response.status_code == 200
    assert SESSION_KEY not in signed_in.session


def test_the_start_page_has_one_button_that_posts_back_with_a_csrf_token(
    signed_in: Client,
) -> None:
    response = signed_in.get(START)
    assert b'<form method="post" action="/frameio/login/" id="frameio-start-form">' in (
        response.content
    )
    assert start_form(response)["csrfmiddlewaretoken"]
    assert response.content.count(b'type="submit"') == 1


def test_the_start_page_names_the_account_a_connect_would_join(signed_in: Client) -> None:
    assert b"<strong>alice</strong>" in signed_in.get(START).content


def test_the_start_page_has_a_way_back_to_the_site(signed_in: Client) -> None:
    response = signed_in.get(START, {"next": "/after/"})
    assert b'<a href="/after/" id="frameio-back">' in response.content


def test_the_start_page_carries_next_through_its_post(signed_in: Client) -> None:
    fields = start_form(signed_in.get(START, {"next": "/after/?tab=1"}))
    assert fields["next"] == "/after/?tab=1"
    response = signed_in.post(START, fields)
    assert response.status_code == 302
    assert signed_in.session[SESSION_KEY][state_of(response)]["next"] == "/after/?tab=1"


def test_the_start_page_drops_an_offsite_next(signed_in: Client) -> None:
    response = signed_in.get(START, {"next": "https://evil.example/"})
    assert "next" not in start_form(response)
    assert b"evil.example" not in response.content


def test_a_post_with_an_offsite_next_is_still_checked(signed_in: Client) -> None:
    response = signed_in.post(START, {"next": "https://evil.example/"})
    assert signed_in.session[SESSION_KEY][state_of(response)]["next"] == ""


@pytest.mark.parametrize("evil", ["https://evil.example/", "//evil.example", "javascript:x"])
def test_login_drops_an_offsite_next(signed_in: Client, evil: str) -> None:
    state = start(signed_in, evil)
    assert signed_in.session[SESSION_KEY][state]["next"] == ""


def test_a_get_of_the_start_page_by_cookieless_visitors_writes_no_session() -> None:
    before = Session.objects.count()
    for _ in range(20):
        response = Client().get(START, {"next": "/"})
        assert response.status_code == 200
        assert settings.SESSION_COOKIE_NAME not in response.cookies
        # The form's token lives in the CSRF cookie instead.
        assert settings.CSRF_COOKIE_NAME in response.cookies
    assert Session.objects.count() == before


@override_settings(MIDDLEWARE=WITHOUT_CSRF_MIDDLEWARE)
def test_a_post_without_the_csrf_token_is_refused_even_without_the_csrf_middleware(
    user: Any,
) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    response = strict.post(START, {"next": "/"})
    assert response.status_code == 403
    assert SESSION_KEY not in strict.session


@override_settings(MIDDLEWARE=WITHOUT_CSRF_MIDDLEWARE)
def test_the_pages_button_works_without_the_csrf_middleware(user: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    response = strict.post(START, start_form(strict.get(START)))
    assert response.status_code == 302
    assert response["Location"].startswith("https://applications.frame.io/oauth2/auth?")


def test_a_get_never_starts_a_connect_even_with_login_on_get(signed_in: Client) -> None:
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "LOGIN_ON_GET": True}):
        response = signed_in.get(START)
    assert response.status_code == 200
    assert SESSION_KEY not in signed_in.session


def test_login_on_get_lets_an_anonymous_visitors_get_start_a_sign_in(client: Client) -> None:
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "LOGIN_ON_GET": True}):
        response = client.get(START, {"next": "/after/"})
    assert response.status_code == 302
    assert response["Location"].startswith("https://applications.frame.io/oauth2/auth?")
    [flow] = client.session[SESSION_KEY].values()
    assert (flow["starter"], flow["next"]) == (None, "/after/")


def test_without_login_on_get_an_anonymous_get_shows_the_page(client: Client) -> None:
    response = client.get(START)
    assert response.status_code == 200
    assert b"Sign in with Frame.io" in response.content


@pytest.mark.parametrize("path", [START, "/frameio/connected/"])
def test_the_pages_with_connect_buttons_cannot_be_framed_without_the_middleware(
    signed_in: Client, path: str
) -> None:
    # The test settings have no XFrameOptionsMiddleware, as many projects do not.
    assert "XFrameOptionsMiddleware" not in str(settings.MIDDLEWARE)
    assert signed_in.get(path)["X-Frame-Options"] == "DENY"


def test_try_again_on_the_error_page_leads_to_the_start_page_keeping_next(
    signed_in: Client,
) -> None:
    state = start(signed_in, "/after/?tab=1")
    response = callback(signed_in, state=state, error="access_denied")
    assert b'href="/frameio/login/?next=%2Fafter%2F%3Ftab%3D1"' in response.content
    page = signed_in.get("/frameio/login/?next=%2Fafter%2F%3Ftab%3D1")
    assert start_form(page)["next"] == "/after/?tab=1"


# --- the redirect URI -------------------------------------------------------------------------


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
