"""RFC 9207: an ``iss`` on the callback must be exactly the configured issuer, checked before
the code is exchanged. A callback without ``iss`` is accepted."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from django.test import Client, override_settings

from frameio_oauth.models import OAuthToken
from frameio_oauth.views import SESSION_KEY
from tests.support.settings import FRAMEIO_OAUTH
from tests.test_views import ME, TOKENS, assert_refused, callback, provider_answers, start

pytestmark = pytest.mark.django_db

ISSUER = "https://issuer.frameio.example"
WITH_ISSUER = {**FRAMEIO_OAUTH, "ISSUER": ISSUER}


@pytest.fixture
def signed_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


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
def test_a_callback_with_two_iss_values_is_refused(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    state = start(signed_in)
    response = signed_in.get(
        f"/frameio/callback/?state={state}&code=C&iss={ISSUER}&iss=https://evil.example"
    )
    assert_refused(response, "wrong_issuer")
    assert len(provider_http.calls) == 0


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
