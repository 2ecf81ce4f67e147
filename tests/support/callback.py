"""A visitor's side of a sign-in flow against a mocked Frame.io: press the start page's button,
come back to the callback with what Frame.io would send."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses
from django.test import Client

from frameio_oauth.models import OAuthToken
from tests.support.frameio import TOKEN_URL, USERINFO_URL

TOKENS = {"access_token": "AT-1", "refresh_token": "RT-1", "expires_in": 3600}
ME = {"id": "fio-42", "email": "alice@frame.example", "name": "Alice"}


def start(client: Client, next_url: str | None = None) -> str:
    """Press the start page's button; return the state the flow put in the authorize URL."""
    response = client.post("/frameio/login/", {"next": next_url} if next_url else {})
    assert response.status_code == 302
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


def provider_answers(mock: responses.RequestsMock) -> None:
    """Frame.io exchanges any code for TOKENS, and says they are ME's."""
    mock.post(TOKEN_URL, json=TOKENS)
    mock.get(USERINFO_URL, json=ME)


def callback(client: Client, **params: str) -> Any:
    return client.get("/frameio/callback/", params)


def assert_refused(response: Any, code: str, status: int = 400) -> None:
    """The callback ended on the error page with ``code`` and ``status``, storing nothing."""
    assert response.status_code == status
    assert f'data-error-code="{code}"'.encode() in response.content
    assert response["Referrer-Policy"] == "no-referrer"
    assert not OAuthToken.objects.exists()
