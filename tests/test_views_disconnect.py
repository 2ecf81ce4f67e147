"""The connected page (views.connected) and its disconnect button (views.disconnect): a
CSRF-checked POST revokes the grant at Frame.io, then deletes the row, or keeps it
disconnected until a later sweep gets the revocation through."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from django.conf import settings
from django.test import Client, override_settings

from frameio_oauth import services, signals
from frameio_oauth.exceptions import NotConnected
from frameio_oauth.models import OAuthToken
from tests.support.frameio import REVOKE_URL
from tests.support.standin import form_fields

pytestmark = pytest.mark.django_db


def test_connected_page_shows_the_account_but_no_secret(
    signed_in: Client, user: Any, make_token: Any
) -> None:
    make_token(user)
    response = signed_in.get("/frameio/connected/")
    assert response.status_code == 200
    assert b"alice@frame.example" in response.content
    assert b"secret" not in response.content


def test_the_connected_pages_connect_button_posts_to_the_start_url(signed_in: Client) -> None:
    content = signed_in.get("/frameio/connected/").content.decode()
    assert '<form method="post" action="/frameio/login/">' in content
    assert form_fields(content)["csrfmiddlewaretoken"]
    assert 'href="/frameio/login/' not in content


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


def test_disconnecting_when_not_connected_says_so_and_calls_nobody(
    client: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    client.force_login(user)
    response = client.post("/frameio/disconnect/", follow=True)
    assert b"Frame.io was not connected." in response.content
    assert len(provider_http.calls) == 0


@override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if "CsrfViewMiddleware" not in m])
def test_a_cross_site_disconnect_is_refused_even_without_the_csrf_middleware(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    response = strict.post("/frameio/disconnect/")
    assert response.status_code == 403
    assert OAuthToken.objects.filter(user=user).exists()
    assert len(provider_http.calls) == 0
