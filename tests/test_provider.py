from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
import requests
import responses
from django.test import override_settings
from django.utils import timezone

from frameio_oauth import provider, services
from frameio_oauth.exceptions import ProviderError, ProviderUnavailable, ReauthorizationRequired
from frameio_oauth.models import OAuthToken
from tests.support.frameio import REVOKE_URL, TOKEN_URL, USERINFO_URL
from tests.support.loopback import loopback_server
from tests.support.settings import FRAMEIO_OAUTH

PUBLIC = {key: value for key, value in FRAMEIO_OAUTH.items() if key != "CLIENT_SECRET"}
GOOD = {
    "access_token": "AT",
    "refresh_token": "RT",
    "expires_in": 3600,
    "scope": "account.read offline",
    "token_type": "bearer",
}


def form_of(call: Any) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(call.request.body).items()}


def refresh_with(mock: responses.RequestsMock, **kwargs: Any) -> provider.TokenResponse:
    mock.post(TOKEN_URL, **kwargs)
    return provider.refresh_grant("old-refresh")


# --- authorize URL -------------------------------------------------------------------------


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


FRAMEIO_AUTHORIZE = "https://applications.frame.io/oauth2/auth"


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


# --- client authentication ------------------------------------------------------------------


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
    with override_settings(FRAMEIO_OAUTH=PUBLIC):
        provider.exchange_code("CODE", redirect_uri="https://x/cb", code_verifier="V" * 43)
    call = provider_http.calls[0]
    assert "Authorization" not in call.request.headers
    assert form_of(call)["client_id"] == "test-client"
    assert form_of(call)["code_verifier"] == "V" * 43


def test_a_token_request_is_an_encoded_form_post_that_asks_for_json(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, json=GOOD)
    awkward = "a+b/c=d&scope=admin %"
    provider.refresh_grant(awkward, scope="account.read offline")
    request = provider_http.calls[0].request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("frameio-oauth ")
    assert int(request.headers["Content-Length"]) == len(request.body)
    # Encoded, not pasted: the awkward token comes back whole and smuggles in no field.
    assert form_of(provider_http.calls[0])["refresh_token"] == awkward
    assert form_of(provider_http.calls[0])["scope"] == "account.read offline"


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


# --- parsing --------------------------------------------------------------------------------


def test_a_complete_answer_is_parsed(provider_http: responses.RequestsMock) -> None:
    tokens = refresh_with(provider_http, json=GOOD)
    assert tokens == provider.TokenResponse("AT", "bearer", 3600, "RT", "account.read offline")


def test_the_parsed_answer_does_not_show_secrets_in_its_repr(
    provider_http: responses.RequestsMock,
) -> None:
    text = repr(refresh_with(provider_http, json=GOOD))
    assert "AT" not in text.replace("access_token", "")
    assert "RT" not in text


def test_expires_in_as_a_numeric_string_is_accepted(provider_http: responses.RequestsMock) -> None:
    assert refresh_with(provider_http, json={**GOOD, "expires_in": "1800"}).expires_in == 1800


def test_missing_expires_in_falls_back_to_the_presets_lifetime(
    provider_http: responses.RequestsMock,
) -> None:
    answer = {key: value for key, value in GOOD.items() if key != "expires_in"}
    assert refresh_with(provider_http, json=answer).expires_in == 3600


@pytest.mark.parametrize(
    "value", ["soon", -5, 0, 0.5, True, [3600], "\u00b2", "9" * 40, "", float("nan")]
)
def test_an_unusable_expires_in_falls_back_to_the_presets_lifetime(
    provider_http: responses.RequestsMock, value: Any
) -> None:
    assert refresh_with(provider_http, json={**GOOD, "expires_in": value}).expires_in == 3600


@pytest.mark.parametrize("value", [3599.5, "3599.5", 3599.0])
def test_a_fractional_expires_in_is_cut_to_whole_seconds(
    provider_http: responses.RequestsMock, value: Any
) -> None:
    assert refresh_with(provider_http, json={**GOOD, "expires_in": value}).expires_in == 3599


@pytest.mark.parametrize("value", [1e15, 10**15, 10**400, provider.MAX_EXPIRES_IN + 1])
def test_an_absurdly_long_expires_in_is_cut_to_the_presets_lifetime(
    provider_http: responses.RequestsMock, value: Any
) -> None:
    assert refresh_with(provider_http, json={**GOOD, "expires_in": value}).expires_in == 3600


def test_an_absurd_expires_in_under_adobe_ims_uses_its_24_hour_lifetime(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(
        "https://ims-na1.adobelogin.com/ims/token/v3", json={**GOOD, "expires_in": -1}
    )
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "PROVIDER": "adobe-ims"}):
        assert provider.refresh_grant("old-refresh").expires_in == 24 * 3600


def test_a_doubtful_expires_in_is_logged_as_a_warning(
    provider_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="frameio_oauth.provider"):
        refresh_with(provider_http, json={**GOOD, "expires_in": 3599.5})
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "expires_in" in caplog.text


@pytest.mark.parametrize("value", ["", 42, ["RT"], {"token": "RT"}])
def test_an_unusable_refresh_token_is_treated_as_absent(
    provider_http: responses.RequestsMock, value: Any
) -> None:
    tokens = refresh_with(provider_http, json={**GOOD, "refresh_token": value})
    assert (tokens.access_token, tokens.refresh_token) == ("AT", None)


@pytest.mark.parametrize("value", [42, ["bearer"], "", "  "])
def test_an_unusable_token_type_becomes_bearer(
    provider_http: responses.RequestsMock, value: Any
) -> None:
    assert refresh_with(provider_http, json={**GOOD, "token_type": value}).token_type == "Bearer"


def test_the_warning_about_a_doubtful_field_names_it_but_never_its_value(
    provider_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="frameio_oauth.provider"):
        refresh_with(provider_http, json={**GOOD, "token_type": ["RT-LEAK-in-token-type"]})
    assert "token_type" in caplog.text
    assert "RT-LEAK" not in caplog.text


def test_a_well_formed_answer_logs_no_warning(
    provider_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="frameio_oauth.provider"):
        refresh_with(provider_http, json=GOOD)
    assert caplog.records == []


@pytest.mark.django_db
def test_a_rotated_refresh_token_in_a_doubtful_answer_is_stored(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    now = timezone.now()
    token = make_token(
        user, expires_at=now + timedelta(minutes=2), next_refresh_at=now - timedelta(minutes=3)
    )
    provider_http.post(
        TOKEN_URL,
        json={"access_token": "AT-new", "refresh_token": "RT-new", "expires_in": 3599.5},
    )
    services.refresh(token.pk)
    stored = OAuthToken.objects.get(pk=token.pk)
    assert (stored.access_token, stored.refresh_token, stored.failure_count) == (
        "AT-new",
        "RT-new",
        0,
    )


def test_a_missing_refresh_token_is_allowed(provider_http: responses.RequestsMock) -> None:
    answer = {key: value for key, value in GOOD.items() if key != "refresh_token"}
    assert refresh_with(provider_http, json=answer).refresh_token is None


@pytest.mark.parametrize("value", [None, "", 42])
def test_a_missing_or_empty_access_token_is_a_provider_error(
    provider_http: responses.RequestsMock, value: Any
) -> None:
    with pytest.raises(ProviderError, match="access_token"):
        refresh_with(provider_http, json={**GOOD, "access_token": value})


def test_invalid_grant_means_reauthorization(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ReauthorizationRequired, match="invalid_grant"):
        refresh_with(
            provider_http,
            status=400,
            json={"error": "invalid_grant", "error_description": "token reused"},
        )


def test_invalid_client_is_a_provider_error_not_a_reauthorization(
    provider_http: responses.RequestsMock,
) -> None:
    with pytest.raises(ProviderError, match="invalid_client"):
        refresh_with(provider_http, status=401, json={"error": "invalid_client"})


def test_an_error_in_a_200_answer_is_still_an_error(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ReauthorizationRequired):
        refresh_with(provider_http, json={"error": "invalid_grant"})


@pytest.mark.parametrize("error", [None, ""])
def test_a_200_answer_with_an_empty_error_keeps_its_rotated_tokens(
    provider_http: responses.RequestsMock, error: Any
) -> None:
    answer = refresh_with(provider_http, json={**GOOD, "refresh_token": "RT2", "error": error})
    assert (answer.access_token, answer.refresh_token) == ("AT", "RT2")


def test_a_200_answer_with_an_error_and_tokens_keeps_the_tokens(
    provider_http: responses.RequestsMock,
) -> None:
    answer = refresh_with(provider_http, json={**GOOD, "refresh_token": "RT2", "error": "odd"})
    assert answer.refresh_token == "RT2"


def test_a_200_answer_with_an_error_and_tokens_is_logged_as_a_warning(
    provider_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="frameio_oauth.provider"):
        refresh_with(provider_http, json={**GOOD, "error": "odd"})
    assert "keeping the tokens" in caplog.text


def test_a_200_answer_with_an_error_and_no_access_token_is_refused_with_that_error(
    provider_http: responses.RequestsMock,
) -> None:
    with pytest.raises(ProviderError, match="HTTP 200 invalid_request"):
        refresh_with(provider_http, json={"error": "invalid_request", "access_token": ""})


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_errors_and_rate_limits_are_transient(
    provider_http: responses.RequestsMock, status: int
) -> None:
    with pytest.raises(ProviderUnavailable, match=str(status)):
        refresh_with(provider_http, status=status, json={"error": "server_error"})


def test_retry_after_is_kept_on_a_429(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        refresh_with(provider_http, status=429, headers={"Retry-After": "120"}, body="")
    assert caught.value.retry_after == 120


def test_temporarily_unavailable_is_transient(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderUnavailable):
        refresh_with(provider_http, status=400, json={"error": "temporarily_unavailable"})


def test_an_html_502_is_transient_not_a_json_error(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderUnavailable, match="502"):
        refresh_with(
            provider_http, status=502, body="<html>Bad gateway</html>", content_type="text/html"
        )


def test_an_html_200_is_a_clear_provider_error(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderError, match=r"non-JSON body \(text/html"):
        refresh_with(provider_http, body="<html>login</html>", content_type="text/html")


def test_an_html_400_is_a_clear_provider_error(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderError, match="HTTP 400 with a non-JSON body"):
        refresh_with(provider_http, status=400, body="<html>nope</html>", content_type="text/html")


def test_a_json_array_is_a_provider_error(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderError, match="JSON that is not an object"):
        refresh_with(provider_http, json=["access_token"])


def test_a_timeout_is_transient(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderUnavailable, match="timed out"):
        refresh_with(provider_http, body=requests.ConnectTimeout())


def test_a_connection_error_is_transient(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderUnavailable, match="ConnectionError"):
        refresh_with(provider_http, body=requests.ConnectionError())


def test_error_messages_never_echo_the_refresh_token(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ReauthorizationRequired) as caught:
        refresh_with(provider_http, status=400, json={"error": "invalid_grant"})
    assert "old-refresh" not in str(caught.value)


@pytest.mark.django_db
def test_an_empty_refresh_token_in_a_refresh_answer_keeps_the_stored_one(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user, expires_at=timezone.now() + timedelta(minutes=2))
    provider_http.post(TOKEN_URL, json={"access_token": "AT-new", "refresh_token": ""})
    services.refresh(token.pk)
    stored = OAuthToken.objects.get(pk=token.pk)
    assert (stored.access_token, stored.refresh_token) == ("AT-new", token.refresh_token)


# --- provider text in messages --------------------------------------------------------------

ECHOING_RT = {"error": "invalid_request", "error_description": "refresh_token RT-xyz is malformed"}


def test_a_refresh_token_echoed_in_the_description_is_redacted(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, status=400, json=ECHOING_RT)
    with pytest.raises(ProviderError) as caught:
        provider.refresh_grant("RT-xyz")
    assert "RT-xyz" not in str(caught.value)
    assert "refresh_token [redacted] is malformed" in str(caught.value)


def test_a_refresh_token_echoed_with_invalid_grant_is_redacted(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(
        TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "RT-xyz used"}
    )
    with pytest.raises(ReauthorizationRequired) as caught:
        provider.refresh_grant("RT-xyz")
    assert "RT-xyz" not in str(caught.value)


def test_a_code_and_verifier_echoed_in_the_description_are_redacted(
    provider_http: responses.RequestsMock,
) -> None:
    description = "code CODE-123 does not match verifier VERIFIER-456"
    provider_http.post(
        TOKEN_URL, status=400, json={"error": "invalid_request", "error_description": description}
    )
    with pytest.raises(ProviderError) as caught:
        provider.exchange_code(
            "CODE-123", redirect_uri="https://x/cb", code_verifier="VERIFIER-456"
        )
    assert "CODE-123" not in str(caught.value)
    assert "VERIFIER-456" not in str(caught.value)


@pytest.mark.parametrize(
    ("method", "url", "status", "answer", "call", "secret"),
    [
        pytest.param(
            "POST",
            TOKEN_URL,
            401,
            {"error": "invalid_client", "error_description": "secret test-secret is wrong"},
            lambda: provider.refresh_grant("RT-xyz"),
            "test-secret",
            id="client secret at the token endpoint",
        ),
        pytest.param(
            "GET",
            USERINFO_URL,
            401,
            {"error": "invalid_token", "error_description": "AT-abc expired"},
            lambda: provider.fetch_userinfo("AT-abc"),
            "AT-abc",
            id="bearer at the user-info endpoint",
        ),
        pytest.param(
            "POST",
            REVOKE_URL,
            400,
            {"error": "unsupported_token_type", "error_description": "RT-xyz?"},
            lambda: provider.revoke("RT-xyz"),
            "RT-xyz",
            id="token at the revocation endpoint",
        ),
    ],
)
def test_a_secret_the_request_carried_is_redacted_from_the_providers_words(
    provider_http: responses.RequestsMock,
    method: str,
    url: str,
    status: int,
    answer: dict[str, str],
    call: Callable[[], Any],
    secret: str,
) -> None:
    provider_http.add(method, url, status=status, json=answer)
    with pytest.raises(ProviderError) as caught:
        call()
    assert secret not in str(caught.value)


def test_the_basic_credentials_echoed_from_the_authorization_header_are_redacted(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, json=GOOD)
    provider.refresh_grant("RT")
    sent = provider_http.calls[0].request.headers["Authorization"].removeprefix("Basic ")
    answer = {"error": "invalid_client", "error_description": f"bad header Basic {sent}"}
    provider_http.replace(responses.POST, TOKEN_URL, status=401, json=answer)
    with pytest.raises(ProviderError) as caught:
        provider.refresh_grant("RT")
    assert sent not in str(caught.value)


@pytest.mark.parametrize(
    "echo", ["a%2Bb%2Fc%3Dd", "a%2Bb%2Fc%3Dd".replace("%2B", "+"), "a+b/\x00c=d"]
)
def test_a_refresh_token_echoed_encoded_or_split_by_a_control_character_is_redacted(
    provider_http: responses.RequestsMock, echo: str
) -> None:
    provider_http.post(
        TOKEN_URL, status=400, json={"error": "invalid_request", "error_description": echo}
    )
    with pytest.raises(ProviderError) as caught:
        provider.refresh_grant("a+b/c=d")
    assert str(caught.value).endswith(": [redacted]")


def test_a_refresh_token_echoed_as_the_error_code_is_redacted(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, status=400, json={"error": "RT-xyz"})
    with pytest.raises(ProviderError) as caught:
        provider.refresh_grant("RT-xyz")
    assert "RT-xyz" not in str(caught.value)
    assert caught.value.code == "[redacted]"


def test_a_long_description_is_cut_after_redaction_so_no_prefix_of_a_secret_survives(
    provider_http: responses.RequestsMock,
) -> None:
    secret = "RT-" + "s" * 200
    provider_http.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_request", "error_description": "x" * 100 + secret},
    )
    with pytest.raises(ProviderError) as caught:
        provider.refresh_grant(secret)
    assert "RT-sss" not in str(caught.value)
    assert len(str(caught.value)) < 250


@pytest.mark.django_db
def test_an_echoed_refresh_token_never_reaches_last_error(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user, expires_at=timezone.now() + timedelta(minutes=2))
    provider_http.post(
        TOKEN_URL,
        status=400,
        json={**ECHOING_RT, "error_description": f"{token.refresh_token} is malformed"},
    )
    with pytest.raises(ProviderError):
        services.refresh(token.pk)
    stored = OAuthToken.objects.get(pk=token.pk)
    assert token.refresh_token not in stored.last_error
    assert "[redacted] is malformed" in stored.last_error


# --- revoke and user info -------------------------------------------------------------------


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


# --- deadline and size cap, against a real socket --------------------------------------------


def read_request(conn: socket.socket) -> None:
    """Read the whole request: closing with unread bytes would reset the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        received = conn.recv(65536)
        if not received:
            raise ConnectionResetError("the client closed the connection")
        data += received
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)


@pytest.fixture
def slow_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A loopback HTTP server whose behaviour each test sets in the returned dict."""
    behaviour: dict[str, Any] = {}

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        behaviour["connections"] = behaviour.get("connections", 0) + 1
        read_request(conn)
        behaviour["handler"](conn, stop)

    with loopback_server(handle) as base:
        yield f"{base}/oauth2/token", behaviour


def test_a_server_dripping_its_body_is_cut_off_at_the_deadline(
    slow_server: tuple[str, dict[str, Any]],
) -> None:
    url, behaviour = slow_server

    def drip(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{")
        while not stop.wait(0.1):
            try:
                conn.sendall(b" ")
            except OSError:
                return

    behaviour["handler"] = drip
    started = time.monotonic()
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url, "HTTP_TIMEOUT": 1}):
        with pytest.raises(ProviderUnavailable, match=r"deadline|reading"):
            provider.refresh_grant("RT")
    assert time.monotonic() - started < 2.5


def test_provider_calls_share_one_kept_alive_connection(
    slow_server: tuple[str, dict[str, Any]],
) -> None:
    # Against Frame.io every new connection is a TLS handshake: reading an answer to its end
    # must hand the connection back for the next call, not close it.
    url, behaviour = slow_server
    body = json.dumps({"access_token": "AT", "refresh_token": "RT2", "expires_in": 3600})
    answer = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()

    def keep_alive(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(answer)
        conn.settimeout(0.2)
        while not stop.is_set():
            try:
                read_request(conn)
            except TimeoutError:
                continue
            except OSError:
                return
            conn.sendall(answer)

    behaviour["handler"] = keep_alive
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url}):
        answers = [provider.refresh_grant(f"RT{i}") for i in range(3)]
    assert [answer.access_token for answer in answers] == ["AT", "AT", "AT"]
    assert behaviour["connections"] == 1


def test_a_server_that_never_answers_times_out(slow_server: tuple[str, dict[str, Any]]) -> None:
    url, behaviour = slow_server
    behaviour["handler"] = lambda conn, stop: stop.wait(5)
    started = time.monotonic()
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url, "HTTP_TIMEOUT": 1}):
        with pytest.raises(ProviderUnavailable, match="timed out"):
            provider.refresh_grant("RT")
    assert time.monotonic() - started < 2.5


def test_a_body_over_one_mebibyte_is_refused(slow_server: tuple[str, dict[str, Any]]) -> None:
    url, behaviour = slow_server

    def huge(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        chunk = b" " * 65536
        try:
            for _ in range(40):  # 2.5 MiB without a Content-Length
                conn.sendall(chunk)
        except OSError:
            return  # the client stopped reading and closed: what the cap should do

    behaviour["handler"] = huge
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url}):
        with pytest.raises(ProviderError, match="over 1048576 bytes"):
            provider.refresh_grant("RT")


def test_a_declared_huge_body_is_refused_before_reading(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(
        TOKEN_URL, body=json.dumps(GOOD), headers={"Content-Length": str(5 * 1024 * 1024)}
    )
    with pytest.raises(ProviderError, match="over"):
        provider.refresh_grant("RT")


def test_absurdly_nested_json_is_a_provider_error(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderError):
        refresh_with(provider_http, body="[" * 100_000, content_type="application/json")


def test_a_redirect_is_not_followed_with_the_refresh_token(
    provider_http: responses.RequestsMock,
) -> None:
    with pytest.raises(ProviderError, match="307"):
        refresh_with(provider_http, status=307, headers={"Location": "https://x.example/"})
    assert all(call.request.url == TOKEN_URL for call in provider_http.calls)


def test_provider_calls_take_proxies_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, provider_http: responses.RequestsMock
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "api.frame.io")
    provider.reread_environment()
    provider_http.post(TOKEN_URL, json=GOOD)
    provider_http.get(USERINFO_URL, json={"id": "fio-1"})
    try:
        provider.refresh_grant("RT")
        provider.fetch_userinfo("AT")
    finally:
        provider.reread_environment()
    token_call, api_call = (call.request.req_kwargs["proxies"] for call in provider_http.calls)
    assert token_call.get("https") == "http://proxy.internal:3128"
    assert "https" not in api_call


def test_credentials_in_the_token_url_become_http_basic_as_requests_does(
    provider_http: responses.RequestsMock,
) -> None:
    url = TOKEN_URL.replace("https://", "https://proxy-user:proxy%20pass@")
    provider_http.post(url, json=GOOD)
    with override_settings(FRAMEIO_OAUTH={**PUBLIC, "TOKEN_URL": url}):
        provider.refresh_grant("RT")
    expected = base64.b64encode(b"proxy-user:proxy pass").decode()
    assert provider_http.calls[0].request.headers["Authorization"] == f"Basic {expected}"
