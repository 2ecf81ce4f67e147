"""The optional sign-in page (views.sign_in, ``LOGIN_URL = "frameio_oauth:sign_in"``) for a
project that has none: "Sign in with Frame.io" and the site's password form, each keeping
``next``; and the app's pages under Django's LoginRequiredMiddleware."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from frameio_oauth.conf import conf
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.standin import form_fields

pytestmark = pytest.mark.django_db

SIGN_IN = "/frameio/sign-in/"


def test_the_sign_in_page_offers_frameio_and_the_password_form_both_keeping_next(
    client: Client,
) -> None:
    response = client.get(SIGN_IN, {"next": "/reports/"})
    assert response.status_code == 200
    html = response.content.decode()
    frameio = form_fields(html, form_id="frameio-sign-in-form")
    password = form_fields(html, form_id="password-sign-in-form")
    assert frameio["next"] == password["next"] == "/reports/"
    assert 'action="/frameio/login/"' in html
    assert 'name="username"' in html and 'name="password"' in html


def test_the_frameio_button_starts_a_sign_in_at_frameio(client: Client) -> None:
    response = client.get(SIGN_IN, {"next": "/reports/"})
    fields = form_fields(response.content.decode(), form_id="frameio-sign-in-form")
    started = client.post("/frameio/login/", fields)
    assert started.status_code == 302
    assert started["Location"].startswith(conf.authorize_url)


def test_a_password_sign_in_goes_to_next(client: Client, user: Any) -> None:
    response = client.post(SIGN_IN, {"username": "alice", "password": "pw", "next": "/reports/"})
    assert response.status_code == 302
    assert response["Location"] == "/reports/"
    assert client.session["_auth_user_id"] == str(user.pk)


def test_without_next_or_login_redirect_url_a_sign_in_lands_on_the_connected_page(
    client: Client, user: Any
) -> None:
    # Django's default LOGIN_REDIRECT_URL, /accounts/profile/, exists in no new project.
    assert settings.LOGIN_REDIRECT_URL == "/accounts/profile/"
    response = client.post(SIGN_IN, {"username": "alice", "password": "pw"})
    assert response["Location"] == "/frameio/connected/"


@override_settings(LOGIN_REDIRECT_URL="/dashboard/")
def test_a_projects_own_login_redirect_url_is_where_a_sign_in_lands(
    client: Client, user: Any
) -> None:
    response = client.post(SIGN_IN, {"username": "alice", "password": "pw"})
    assert response["Location"] == "/dashboard/"


def test_a_sign_in_never_redirects_off_site(client: Client, user: Any) -> None:
    response = client.post(
        SIGN_IN, {"username": "alice", "password": "pw", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/frameio/connected/"


def test_a_wrong_password_shows_the_form_again_with_the_error(client: Client, user: Any) -> None:
    response = client.post(SIGN_IN, {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b"errorlist" in response.content
    assert "_auth_user_id" not in client.session


def test_with_sign_up_off_the_page_says_frameio_sign_in_needs_a_connected_account(
    client: Client,
) -> None:
    assert b"once you have connected Frame.io" in client.get(SIGN_IN).content


@override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True})
def test_with_sign_up_on_the_page_makes_no_such_condition(client: Client) -> None:
    assert b"once you have connected Frame.io" not in client.get(SIGN_IN).content


def test_the_sign_in_page_cannot_be_framed_and_leads_back_to_the_site(client: Client) -> None:
    response = client.get(SIGN_IN)
    assert response["X-Frame-Options"] == "DENY"
    assert '<a href="/" id="frameio-back">' in response.content.decode()


# --- Django's LoginRequiredMiddleware -------------------------------------------------------

LOGIN_REQUIRED = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]


@override_settings(MIDDLEWARE=LOGIN_REQUIRED, LOGIN_URL="frameio_oauth:sign_in")
@pytest.mark.parametrize("path", [SIGN_IN, "/frameio/login/", "/frameio/callback/"])
def test_under_login_required_middleware_an_anonymous_visitor_reaches_the_sign_in_pages(
    client: Client, path: str
) -> None:
    # 400 for the callback: it has no state, which is its own refusal, not a sign-in redirect.
    assert client.get(path).status_code == (400 if "callback" in path else 200)


@override_settings(MIDDLEWARE=LOGIN_REQUIRED, LOGIN_URL="frameio_oauth:sign_in")
def test_under_login_required_middleware_the_connected_page_still_needs_a_sign_in(
    client: Client,
) -> None:
    response = client.get("/frameio/connected/")
    assert response.status_code == 302
    assert response["Location"].startswith(f"{SIGN_IN}?next=")
