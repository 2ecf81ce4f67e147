"""Storing a new grant (services.exchange_code, store_grant): every value the provider sends is
checked against its column before anything is stored, and a grant with an unusable value is
refused and given back. Connecting over a grant stored before is in test_revocation.py."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from frameio_oauth import provider, services
from frameio_oauth.exceptions import ProviderError, UnusableProviderValue
from frameio_oauth.models import OAuthToken
from tests.support.callback import ME, TOKENS
from tests.support.frameio import REVOKE_URL, TOKEN_URL, USERINFO_URL, revoked_tokens

pytestmark = pytest.mark.django_db


def exchange(mock: responses.RequestsMock, *, tokens: Any = None, me: Any = None) -> Any:
    mock.post(TOKEN_URL, json={**TOKENS, **(tokens or {})})
    mock.get(USERINFO_URL, json={**ME, **(me or {})})
    mock.post(REVOKE_URL, body="")
    return services.exchange_code("C", redirect_uri="https://site.example/cb", code_verifier=None)


@pytest.mark.parametrize(
    ("tokens", "me", "field"),
    [
        (None, {"id": "x" * 256}, "provider_user_id"),
        (None, {"id": "fio\x0042"}, "provider_user_id"),
        ({"scope": "account.read " * 100}, None, "scope"),
        ({"token_type": "Bearer" * 10}, None, "token_type"),
        ({"refresh_token": "RT-\u00e9"}, None, "refresh_token"),
    ],
    ids=["id-too-long", "id-with-nul", "scope-too-long", "type", "refresh-token-not-ascii"],
)
def test_a_new_grant_with_a_value_its_column_cannot_hold_is_refused_and_given_back(
    provider_http: responses.RequestsMock, tokens: Any, me: Any, field: str
) -> None:
    with pytest.raises(UnusableProviderValue) as refused:
        exchange(provider_http, tokens=tokens, me=me)
    assert refused.value.field == field
    # Given back by the refresh token, or by the access token when that one is unusable.
    assert revoked_tokens(provider_http) in (["RT-1"], ["AT-1"])
    assert not OAuthToken.objects.exists()


@pytest.mark.parametrize(
    "email",
    ["a" * 250 + "@frame.example", "not an address", "j\u00f6rg@example.com", "a\x00@x.io"],
    ids=["too-long", "not-an-address", "non-ascii-local-part", "nul"],
)
def test_an_email_address_the_column_cannot_hold_is_dropped_and_the_grant_kept(
    provider_http: responses.RequestsMock, user: Any, email: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Optional and only shown: it must not block a connect or a sign-in.
    tokens, info = exchange(provider_http, me={"email": email})
    services.store_grant(user, tokens, info)
    row = OAuthToken.objects.get(user=user)
    assert (row.provider_user_id, row.provider_email) == ("fio-42", "")
    assert revoked_tokens(provider_http) == []
    assert "e-mail address Frame.io sent cannot be stored" in caplog.text
    assert email not in caplog.text


@pytest.mark.parametrize(
    "access_token",
    ["AT-\u20ac", "AT-\ud800", "AT\nX", ""],
    ids=["euro", "surrogate", "newline", "empty"],
)
def test_an_access_token_that_is_not_printable_ascii_is_a_provider_error(
    provider_http: responses.RequestsMock, access_token: str
) -> None:
    # RFC 6749 appendix A: it could not go into an Authorization header.
    provider_http.post(TOKEN_URL, json={**TOKENS, "access_token": access_token})
    with pytest.raises(ProviderError, match="no usable access_token"):
        services.exchange_code("C", redirect_uri="https://site.example/cb", code_verifier=None)
    assert not OAuthToken.objects.exists()


def test_the_refusal_names_the_value_but_never_quotes_it(
    provider_http: responses.RequestsMock,
) -> None:
    with pytest.raises(UnusableProviderValue) as refused:
        exchange(provider_http, me={"id": "secret-looking-" + "x" * 300})
    assert "provider user id" in str(refused.value)
    assert "secret-looking" not in str(refused.value)


def test_a_grant_of_an_account_connected_here_is_not_given_back_over_an_unusable_value(
    provider_http: responses.RequestsMock, user: Any, make_token: Any
) -> None:
    # A provider that revokes every grant of a user and client at once would end the live
    # connection too.
    make_token(user, provider_user_id="fio-42")
    with pytest.raises(UnusableProviderValue):
        exchange(provider_http, tokens={"token_type": "Bearer" * 10})
    assert revoked_tokens(provider_http) == []
    assert OAuthToken.objects.get(user=user).access_token == f"access-{user.pk}-secret"


def test_store_grant_refuses_an_unusable_value_before_writing_anything(user: Any) -> None:
    from frameio_oauth.provider import TokenResponse, UserInfo

    tokens = TokenResponse("AT", "Bearer", 3600, "RT", "account.read offline")
    with pytest.raises(UnusableProviderValue):
        services.store_grant(user, tokens, UserInfo(id="x" * 300, email="a@frame.example"))
    assert not OAuthToken.objects.exists()


def test_a_grant_whose_answer_names_no_scope_records_the_scope_asked_for(user: Any) -> None:
    # RFC 6749 §5.1: an answer without scope granted exactly what was asked for.
    tokens = provider.TokenResponse("AT", "Bearer", 3600, "RT", scope=None)
    services.store_grant(user, tokens, provider.UserInfo(id="fio-1"))
    assert OAuthToken.objects.get(user=user).scope == "account.read offline"
