"""Frame.io's legacy endpoints, as the test settings' "frameio" preset names them. The tests
mock them with ``responses``, which resolves nothing; conftest fails any test that would
reach the real host."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import responses

from frameio_oauth import provider
from tests.support.settings import FRAMEIO_OAUTH

TOKEN_URL = "https://applications.frame.io/oauth2/token"
REVOKE_URL = "https://applications.frame.io/oauth2/revoke"
USERINFO_URL = "https://api.frame.io/v2/me"

# A refresh answer that rotates the refresh token.
NEW = {"access_token": "AT-new", "refresh_token": "RT-new", "expires_in": 3600}


def revoked_tokens(mock: responses.RequestsMock) -> list[str]:
    """The token each call to the revocation endpoint asked to revoke, in order."""
    return [
        parse_qs(str(call.request.body))["token"][0]
        for call in mock.calls
        if call.request.url == REVOKE_URL
    ]


# A new grant, as the code exchange reads it.
GRANT = provider.TokenResponse(
    access_token="AT-1", token_type="bearer", expires_in=3600, refresh_token="RT-1"
)
# A complete answer of the token endpoint.
GOOD = {
    "access_token": "AT",
    "refresh_token": "RT",
    "expires_in": 3600,
    "scope": "account.read offline",
    "token_type": "bearer",
}
# The test settings as a public client's: no secret.
PUBLIC_CLIENT = {key: value for key, value in FRAMEIO_OAUTH.items() if key != "CLIENT_SECRET"}


def form_of(call: Any) -> dict[str, str]:
    """The form a mocked call sent, one value a field."""
    return {key: values[0] for key, values in parse_qs(call.request.body).items()}


def refresh_with(mock: responses.RequestsMock, **answer: Any) -> provider.TokenResponse:
    """A refresh of "old-refresh" that the token endpoint answers with ``answer``."""
    mock.post(TOKEN_URL, **answer)
    return provider.refresh_grant("old-refresh")
