"""The authorization server's answers read into small types or typed errors, and its words
made safe to quote: printable, cut short, every secret of the request redacted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import responses
from django.test import override_settings

from frameio_oauth import provider
from frameio_oauth.exceptions import ProviderError, ProviderUnavailable, ReauthorizationRequired
from tests.support.frameio import GOOD, REVOKE_URL, TOKEN_URL, USERINFO_URL, refresh_with
from tests.support.settings import FRAMEIO_OAUTH

# --- a token answer ---------------------------------------------------------------------------


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


def test_a_missing_refresh_token_is_allowed(provider_http: responses.RequestsMock) -> None:
    answer = {key: value for key, value in GOOD.items() if key != "refresh_token"}
    assert refresh_with(provider_http, json=answer).refresh_token is None


@pytest.mark.parametrize("value", [None, "", 42])
def test_a_missing_or_empty_access_token_is_a_provider_error(
    provider_http: responses.RequestsMock, value: Any
) -> None:
    with pytest.raises(ProviderError, match="access_token"):
        refresh_with(provider_http, json={**GOOD, "access_token": value})


# --- errors -----------------------------------------------------------------------------------


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


def test_absurdly_nested_json_is_a_provider_error(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderError):
        refresh_with(provider_http, body="[" * 100_000, content_type="application/json")


# --- provider text in messages ----------------------------------------------------------------


def test_error_messages_never_echo_the_refresh_token(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ReauthorizationRequired) as caught:
        refresh_with(provider_http, status=400, json={"error": "invalid_grant"})
    assert "old-refresh" not in str(caught.value)


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
