"""How a refresh reads the token endpoint's answer: a scope in an unusual shape, and a
refusal quoted back to a public client, which has no client secret to redact."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import responses
from django.test import override_settings
from django.utils import timezone

from frameio_oauth import services
from frameio_oauth.exceptions import ProviderError
from frameio_oauth.models import OAuthToken
from tests.support.frameio import TOKEN_URL
from tests.support.settings import FRAMEIO_OAUTH

pytestmark = pytest.mark.django_db

NEW = {"access_token": "AT-new", "refresh_token": "RT-new", "expires_in": 3600}


@pytest.fixture
def due_token(user: Any, make_token: Any) -> OAuthToken:
    now = timezone.now()
    return make_token(
        user, expires_at=now + timedelta(minutes=2), next_refresh_at=now - timedelta(minutes=1)
    )


def test_a_scope_sent_as_a_list_is_stored_joined_as_the_preset_writes_scopes(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={**NEW, "scope": ["account.read", "offline", "asset.read"]})
    services.refresh(due_token.pk)
    # The legacy preset's scopes are space-separated.
    assert OAuthToken.objects.get(pk=due_token.pk).scope == "account.read offline asset.read"


def test_a_scope_that_is_neither_text_nor_a_list_keeps_the_stored_scope_and_the_new_tokens(
    due_token: OAuthToken, provider_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    provider_http.post(TOKEN_URL, json={**NEW, "scope": {"granted": 42}})
    services.refresh(due_token.pk)
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert (row.access_token, row.refresh_token, row.scope) == (
        "AT-new",
        "RT-new",
        due_token.scope,
    )
    assert "unusable scope (dict): keeping the stored scope" in caplog.text


def test_a_public_clients_refused_refresh_quotes_frameio_without_the_refresh_token(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    public = {key: value for key, value in FRAMEIO_OAUTH.items() if key != "CLIENT_SECRET"}
    spent = due_token.refresh_token
    provider_http.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_request", "error_description": f"malformed token {spent}"},
    )
    with override_settings(FRAMEIO_OAUTH=public), pytest.raises(ProviderError) as caught:
        services.refresh(due_token.pk)
    assert "invalid_request" in str(caught.value)
    assert "[redacted]" in str(caught.value)
    assert spent not in str(caught.value)
    assert spent not in OAuthToken.objects.get(pk=due_token.pk).last_error
