"""Every value the provider sends is checked against its column before anything is stored: a
new grant with an unusable value is refused and given back; a refresh answer keeps its tokens
and gives way on the value alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from django.utils import timezone

from frameio_oauth import services
from frameio_oauth.exceptions import UnusableProviderValue
from frameio_oauth.models import OAuthToken
from tests.support.frameio import REVOKE_URL, TOKEN_URL, USERINFO_URL

pytestmark = pytest.mark.django_db

TOKENS = {"access_token": "AT-1", "refresh_token": "RT-1", "expires_in": 3600}
ME = {"id": "fio-42", "email": "alice@frame.example"}


def exchange(mock: responses.RequestsMock, *, tokens: Any = None, me: Any = None) -> Any:
    mock.post(TOKEN_URL, json={**TOKENS, **(tokens or {})})
    mock.get(USERINFO_URL, json={**ME, **(me or {})})
    mock.post(REVOKE_URL, body="")
    return services.exchange_code("C", redirect_uri="https://site.example/cb", code_verifier=None)


def revoked(mock: responses.RequestsMock) -> list[str]:
    return [parse_qs(c.request.body)["token"][0] for c in mock.calls if c.request.url == REVOKE_URL]


@pytest.mark.parametrize(
    ("tokens", "me", "field"),
    [
        (None, {"id": "x" * 256}, "provider_user_id"),
        (None, {"id": "fio\x0042"}, "provider_user_id"),
        (None, {"email": "a" * 250 + "@frame.example"}, "provider_email"),
        (None, {"email": "not an address"}, "provider_email"),
        ({"scope": "account.read " * 100}, None, "scope"),
        ({"token_type": "Bearer" * 10}, None, "token_type"),
    ],
    ids=["id-too-long", "id-with-nul", "email-too-long", "not-an-email", "scope-too-long", "type"],
)
def test_a_new_grant_with_a_value_its_column_cannot_hold_is_refused_and_given_back(
    provider_http: responses.RequestsMock, tokens: Any, me: Any, field: str
) -> None:
    with pytest.raises(UnusableProviderValue) as refused:
        exchange(provider_http, tokens=tokens, me=me)
    assert refused.value.field == field
    assert revoked(provider_http) == ["RT-1"]
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
        exchange(provider_http, me={"email": "not an address"})
    assert revoked(provider_http) == []
    assert OAuthToken.objects.get(user=user).access_token == f"access-{user.pk}-secret"


def test_store_grant_refuses_an_unusable_value_before_writing_anything(user: Any) -> None:
    from frameio_oauth.provider import TokenResponse, UserInfo

    tokens = TokenResponse("AT", "Bearer", 3600, "RT", "account.read offline")
    with pytest.raises(UnusableProviderValue):
        services.store_grant(user, tokens, UserInfo(id="fio-1", email="x" * 300))
    assert not OAuthToken.objects.exists()


@pytest.fixture
def due(user: Any, make_token: Any) -> OAuthToken:
    return make_token(user, expires_at=timezone.now() + timedelta(minutes=2))


def test_a_refresh_answer_with_an_overlong_scope_keeps_its_tokens_and_the_stored_scope(
    due: OAuthToken, provider_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    provider_http.post(TOKEN_URL, json={**TOKENS, "scope": "account.read " * 100})
    services.refresh(due.pk)
    row = OAuthToken.objects.get(pk=due.pk)
    assert (row.access_token, row.refresh_token) == ("AT-1", "RT-1")
    assert row.scope == due.scope
    assert "scope the provider sent cannot be stored" in caplog.text


def test_a_refresh_answer_with_an_unusable_token_type_is_stored_as_bearer(
    due: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={**TOKENS, "token_type": "mac\x00"})
    services.refresh(due.pk)
    row = OAuthToken.objects.get(pk=due.pk)
    assert (row.refresh_token, row.token_type) == ("RT-1", "Bearer")


# --- at the callback ------------------------------------------------------------------------


def sign_in_with(client: Any, mock: responses.RequestsMock, me: dict[str, Any]) -> Any:
    from tests.test_views import start

    mock.post(TOKEN_URL, json=TOKENS)
    mock.get(USERINFO_URL, json={**ME, **me})
    mock.post(REVOKE_URL, body="")
    state = start(client)
    verifier = client.session["frameio_oauth_flows"][state]["verifier"]
    return client.get("/frameio/callback/", {"state": state, "code": "CODE-7"}), verifier


@pytest.mark.parametrize(
    "me",
    [{"id": "x" * 300}, {"email": "a" * 250 + "@frame.example"}, {"id": "fio\x00"}],
    ids=["id-too-long", "email-too-long", "nul-in-id"],
)
def test_a_callback_with_unusable_account_details_gets_a_friendly_502_and_stores_nothing(
    client: Any, user: Any, provider_http: responses.RequestsMock, me: dict[str, Any]
) -> None:
    client.force_login(user)
    response, _ = sign_in_with(client, provider_http, me)
    assert response.status_code == 502
    assert b"cannot store" in response.content
    assert b"Traceback" not in response.content
    assert not OAuthToken.objects.exists()
    assert revoked(provider_http) == ["RT-1"]


def test_a_sign_up_with_unusable_account_details_creates_no_user(
    client: Any, provider_http: responses.RequestsMock, django_user_model: Any
) -> None:
    from django.test import override_settings

    from tests.support.settings import FRAMEIO_OAUTH

    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True}):
        response, _ = sign_in_with(client, provider_http, {"email": "no address"})
    assert response.status_code == 502
    assert not django_user_model.objects.exists()
    assert "_auth_user_id" not in client.session


def test_with_debug_on_an_unusable_answer_shows_no_code_or_verifier(
    client: Any, user: Any, provider_http: responses.RequestsMock, settings: Any
) -> None:
    settings.DEBUG = True
    client.force_login(user)
    response, verifier = sign_in_with(client, provider_http, {"id": "x" * 300})
    page = response.content.decode()
    assert response.status_code == 502
    assert "CODE-7" not in page
    assert verifier not in page
    assert "RT-1" not in page and "AT-1" not in page
