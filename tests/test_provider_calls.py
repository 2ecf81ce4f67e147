"""The calls to the authorization server, with its endpoints mocked: the authorization
request, client authentication, the token requests' forms, the revocation and the user info."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
import responses
from django.test import override_settings

from frameio_oauth import provider
from frameio_oauth.exceptions import ProviderError, ProviderUnavailable
from tests.support.frameio import (
    GOOD,
    PUBLIC_CLIENT,
    REVOKE_URL,
    TOKEN_URL,
    USERINFO_URL,
    form_of,
    refresh_with,
)
from tests.support.settings import FRAMEIO_OAUTH

# --- authorize URL ----------------------------------------------------------------------------


FRAMEIO_AUTHORIZE = "https://applications.frame.io/oauth2/auth"


def test_authorize_url_carries_state_scopes_and_an_s256_challenge() -> None:
    request = provider.build_authorization_request("https://site.example/frameio/callback/")
    parts = urlsplit(request.url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == FRAMEIO_AUTHORIZE
    assert query["response_type"] == "code"
    assert query["client_id"] == "test-client"
    assert query["scope"] == "account.read offline"
    assert query["state"] == request.state
    assert query["redirect_uri"] == "https://site.example/frameio/callback/"
    assert query["code_challenge_method"] == "S256"
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert request.code_verifier not in request.url


def test_the_verifier_is_43_to_128_unreserved_characters() -> None:
    verifier = provider.build_authorization_request("https://x/").code_verifier
    assert verifier is not None
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )


def test_without_pkce_the_authorize_url_has_no_challenge() -> None:
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "PKCE": False}):
        request = provider.build_authorization_request("https://x/")
    assert "code_challenge" not in request.url
    assert request.code_verifier is None


def test_states_are_unpredictable() -> None:
    states = {provider.build_authorization_request("https://x/").state for _ in range(50)}
    assert len(states) == 50


# --- client authentication --------------------------------------------------------------------


def test_a_confidential_client_uses_http_basic_and_no_client_id_in_the_form(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, json=GOOD)
    provider.exchange_code("CODE", redirect_uri="https://x/cb", code_verifier=None)
    call = provider_http.calls[0]
    expected = base64.b64encode(b"test-client:test-secret").decode()
    assert call.request.headers["Authorization"] == f"Basic {expected}"
    assert form_of(call) == {
        "grant_type": "authorization_code",
        "code": "CODE",
        "redirect_uri": "https://x/cb",
    }


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("plain-id", "s3cr+t %/&=é"), ("id:with:colons", "p@ss:word"), ("id", "   ")],
)
def test_basic_credentials_are_form_urlencoded_and_decode_as_the_server_decodes_them(
    provider_http: responses.RequestsMock, client_id: str, secret: str
) -> None:
    provider_http.post(TOKEN_URL, json=GOOD)
    settings = {**FRAMEIO_OAUTH, "CLIENT_ID": client_id, "CLIENT_SECRET": secret}
    with override_settings(FRAMEIO_OAUTH=settings):
        provider.refresh_grant("RT")
    header = provider_http.calls[0].request.headers["Authorization"]
    decoded = base64.b64decode(header.removeprefix("Basic ")).decode("ascii")
    # As django-oauth-toolkit (and Hydra's url.QueryUnescape) read it.
    assert tuple(map(unquote_plus, decoded.split(":", 1))) == (client_id, secret)


def test_a_public_pkce_client_sends_client_id_and_verifier_in_the_form(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, json=GOOD)
    with override_settings(FRAMEIO_OAUTH=PUBLIC_CLIENT):
        provider.exchange_code("CODE", redirect_uri="https://x/cb", code_verifier="V" * 43)
    call = provider_http.calls[0]
    assert "Authorization" not in call.request.headers
    assert form_of(call)["client_id"] == "test-client"
    assert form_of(call)["code_verifier"] == "V" * 43


# --- refresh ----------------------------------------------------------------------------------


def test_a_refresh_sends_grant_type_scope_and_refresh_token(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, json=GOOD)
    provider.refresh_grant("old-refresh", scope="account.read offline")
    assert form_of(provider_http.calls[0]) == {
        "grant_type": "refresh_token",
        "refresh_token": "old-refresh",
        "scope": "account.read offline",
    }


def test_a_refresh_without_a_scope_asks_for_the_grant_as_it_stands(
    provider_http: responses.RequestsMock,
) -> None:
    refresh_with(provider_http, json=GOOD)
    assert "scope" not in form_of(provider_http.calls[0])


INVALID_SCOPE = {"error": "invalid_scope", "error_description": "offline was never granted"}


def test_a_refused_scope_is_asked_once_more_without_a_scope(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, status=400, json=INVALID_SCOPE)
    provider_http.post(TOKEN_URL, json=GOOD)
    tokens = provider.refresh_grant("old-refresh", scope="openid offline")
    assert tokens.access_token == "AT"
    sent = [form_of(call) for call in provider_http.calls]
    assert [form.get("scope") for form in sent] == ["openid offline", None]
    assert [form["refresh_token"] for form in sent] == ["old-refresh", "old-refresh"]


def test_a_scope_refused_again_without_a_scope_is_an_error_in_the_providers_words(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, status=400, json=INVALID_SCOPE)
    with pytest.raises(ProviderError, match="invalid_scope: offline was never granted") as info:
        provider.refresh_grant("old-refresh", scope="openid offline")
    assert info.value.code == "invalid_scope"
    assert len(provider_http.calls) == 2


def test_other_refusals_are_not_asked_again(provider_http: responses.RequestsMock) -> None:
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_client"})
    with pytest.raises(ProviderError):
        provider.refresh_grant("old-refresh", scope="openid offline")
    assert len(provider_http.calls) == 1


# --- revoke and user info ---------------------------------------------------------------------


def test_revoke_posts_the_token_and_a_hint(provider_http: responses.RequestsMock) -> None:
    provider_http.post(REVOKE_URL, body="")
    provider.revoke("RT", token_type_hint="refresh_token")
    assert form_of(provider_http.calls[0]) == {"token": "RT", "token_type_hint": "refresh_token"}


def test_revoke_failure_is_typed(provider_http: responses.RequestsMock) -> None:
    provider_http.post(REVOKE_URL, status=503, body="down")
    with pytest.raises(ProviderUnavailable):
        provider.revoke("RT")


def test_legacy_user_info_is_parsed(provider_http: responses.RequestsMock) -> None:
    provider_http.get(USERINFO_URL, json={"id": "u-1", "email": "a@b.c", "name": "A"})
    assert provider.fetch_userinfo("AT") == provider.UserInfo("u-1", "a@b.c", "A")
    assert provider_http.calls[0].request.headers["Authorization"] == "Bearer AT"


def test_v4_user_info_is_unwrapped_from_data(provider_http: responses.RequestsMock) -> None:
    provider_http.get("https://api.frame.io/v4/me", json={"data": {"id": "v4", "email": "x@y.z"}})
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "PROVIDER": "adobe-ims"}):
        assert provider.fetch_userinfo("AT") == provider.UserInfo("v4", "x@y.z", "")


def test_user_info_without_an_id_is_a_provider_error(provider_http: responses.RequestsMock) -> None:
    provider_http.get(USERINFO_URL, json={"email": "a@b.c"})
    with pytest.raises(ProviderError, match="no user id"):
        provider.fetch_userinfo("AT")


def test_user_info_401_is_a_provider_error(provider_http: responses.RequestsMock) -> None:
    provider_http.get(USERINFO_URL, status=401, json={"error": "invalid_token"})
    with pytest.raises(ProviderError):
        provider.fetch_userinfo("AT")
