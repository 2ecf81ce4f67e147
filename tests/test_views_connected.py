"""The connected page (views.connected) tells a person the state of their connection: its
heading matches the status, a grant without a refresh token says it will need connecting
again, times read as people say them, and no internal id or error text shows."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import get_script_prefix, set_script_prefix
from django.utils import timezone

from frameio_oauth.models import OAuthToken

pytestmark = pytest.mark.django_db

CONNECTED = "/frameio/connected/"


def heading(response: Any) -> str:
    match = re.search(r"<h1>(.*?)</h1>", response.content.decode(), re.S)
    assert match is not None
    return match.group(1).strip()


def element(response: Any, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', response.content.decode(), re.S)
    assert match is not None, f"no #{element_id}"
    return match.group(1).strip()


def test_an_active_grant_is_connected(signed_in: Client, user: Any, make_token: Any) -> None:
    make_token(user)
    assert heading(signed_in.get(CONNECTED)) == "Frame.io is connected"


def test_a_grant_that_needs_reauthorization_is_not_called_connected(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    make_token(user, status=OAuthToken.Status.REAUTH_REQUIRED, next_refresh_at=None)
    response = signed_in.get(CONNECTED)
    assert heading(response) == "Sign in with Frame.io again"
    assert b"is connected" not in response.content
    assert b'id="frameio-reconnect"' in response.content


def test_a_disconnected_grant_awaiting_revocation_is_called_disconnected(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    make_token(user, status=OAuthToken.Status.REVOKED)
    response = signed_in.get(CONNECTED)
    assert heading(response) == "Frame.io is disconnected"
    assert "has not yet confirmed" in element(response, "frameio-note")
    assert b'id="frameio-connect"' in response.content
    assert b'id="frameio-disconnect"' not in response.content


def test_a_disconnected_grant_awaiting_revocation_is_no_token_for_the_template(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    # Templates written before ``connection`` test ``token`` alone.
    make_token(user, status=OAuthToken.Status.REVOKED)
    assert signed_in.get(CONNECTED).context["token"] is None


def test_a_grant_without_a_refresh_token_says_it_will_need_connecting_again(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    make_token(user, refresh_token=None, next_refresh_at=None)
    response = signed_in.get(CONNECTED)
    assert heading(response) == "Frame.io is connected for now"
    note = element(response, "frameio-note")
    assert "no refresh token" in note
    assert "you will need to connect again" in note


def test_an_expired_grant_without_a_refresh_token_asks_to_connect_again(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    past = timezone.now() - timedelta(minutes=5)
    make_token(user, refresh_token=None, expires_at=past, next_refresh_at=None)
    response = signed_in.get(CONNECTED)
    assert heading(response) == "Connect Frame.io again"
    assert element(response, "frameio-reconnect") == "Connect Frame.io again"


def test_without_a_grant_the_page_offers_to_connect(signed_in: Client) -> None:
    response = signed_in.get(CONNECTED)
    assert heading(response) == "Frame.io is not connected"
    assert element(response, "frameio-connect") == "Connect Frame.io"


def test_a_refresh_seconds_ago_reads_just_now(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    make_token(user, last_refreshed_at=timezone.now() - timedelta(seconds=10))
    assert element(signed_in.get(CONNECTED), "frameio-refreshed") == "just now"


def test_a_refresh_stamped_by_a_clock_slightly_ahead_reads_just_now(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    make_token(user, last_refreshed_at=timezone.now() + timedelta(seconds=30))
    assert element(signed_in.get(CONNECTED), "frameio-refreshed") == "just now"


def test_a_refresh_minutes_ago_reads_as_minutes_ago(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    make_token(user, last_refreshed_at=timezone.now() - timedelta(minutes=7, seconds=5))
    assert element(signed_in.get(CONNECTED), "frameio-refreshed") == "7\xa0minutes ago"


def test_the_expiry_reads_as_how_soon(signed_in: Client, user: Any, make_token: Any) -> None:
    make_token(user, expires_at=timezone.now() + timedelta(hours=2, minutes=10, seconds=30))
    expires = element(signed_in.get(CONNECTED), "frameio-expires")
    assert expires.startswith("in 2\xa0hours, 10\xa0minutes")


def test_the_page_shows_no_frameio_user_id_when_frameio_gave_no_email(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    make_token(user, provider_email="", provider_user_id="fio-internal-7")
    assert b"fio-internal-7" not in signed_in.get(CONNECTED).content


def test_the_page_shows_no_stored_error_text(signed_in: Client, user: Any, make_token: Any) -> None:
    make_token(
        user,
        status=OAuthToken.Status.REAUTH_REQUIRED,
        last_error="token endpoint answered invalid_grant",
    )
    assert b"invalid_grant" not in signed_in.get(CONNECTED).content


# --- the way back and the card ----------------------------------------------------------------


def test_the_connected_page_has_a_way_back_to_the_site(signed_in: Client) -> None:
    assert b'<a href="/" id="frameio-back">Back to the site</a>' in (
        signed_in.get(CONNECTED).content
    )


def test_the_way_back_leads_to_the_sites_root_under_its_script_prefix(signed_in: Client) -> None:
    # What the WSGI handler does for a site served under /studio (the test client does not).
    previous = get_script_prefix()
    set_script_prefix("/studio/")
    try:
        response = signed_in.get(CONNECTED)
    finally:
        set_script_prefix(previous)
    assert b'<a href="/studio/" id="frameio-back">' in response.content


def test_messages_appear_inside_the_pages_card(signed_in: Client, provider_http: Any) -> None:
    response = signed_in.post("/frameio/disconnect/", follow=True)
    content = response.content.decode()
    card = content[content.index('<main class="card">') : content.index("</main>")]
    assert "Frame.io was not connected." in card


def test_every_page_extends_the_one_base_template(signed_in: Client) -> None:
    for path in ("/frameio/login/", CONNECTED, "/frameio/callback/?state=forged"):
        names = [template.name for template in signed_in.get(path).templates]
        assert "frameio_oauth/layout.html" in names, path
