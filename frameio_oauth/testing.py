"""Frame.io in your own project's tests, without a network: connected users, due and expired
tokens, and a fake Frame.io that answers the token, revocation and user-info endpoints and the
Frame.io API the way the real ones do (rotating refresh tokens, refusing a reused one, 401 for
an access token it did not issue). Needs the ``testing`` extra (``responses``).

With pytest, ``pytest_plugins = ["frameio_oauth.testing"]`` in a conftest.py gives the
``frameio`` fixture; with Django's ``TestCase``, use ``FakeFrameio`` as a context manager.
docs/testing-your-project.md has complete examples.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from . import provider, services
from .conf import conf
from .models import OAuthToken

try:
    import pytest
except ImportError:  # pytest is only needed for the fixture
    pytest = None  # type: ignore[assignment]

API_ORIGIN = "https://api.frame.io"


def connect(
    user: AbstractBaseUser,
    *,
    email: str | None = None,
    provider_user_id: str | None = None,
    expires_in: int = 3600,
    refresh_token: bool = True,
    frameio: FakeFrameio | None = None,
) -> OAuthToken:
    """Store a Frame.io grant for ``user`` as a sign-in would: a fresh token (due only after the
    schedule's lead), known to ``frameio`` (by default the active one) so that refreshing it
    works."""
    fake = frameio or FakeFrameio.active or FakeFrameio()
    grant = fake.issue(refresh=refresh_token, expires_in=expires_in)
    info = provider.UserInfo(
        id=provider_user_id or f"frameio-user-{user.pk}",
        email=email if email is not None else str(getattr(user, "email", "") or ""),
    )
    return services.store_grant(user, grant, info)


def make_due(user: AbstractBaseUser) -> OAuthToken:
    """``user``'s token, due now: the next get_access_token (or sweep) refreshes it."""
    return _set_times(user, next_refresh_at=timezone.now() - timedelta(seconds=1))


def expire(user: AbstractBaseUser) -> OAuthToken:
    """``user``'s token, expired (and due)."""
    past = timezone.now() - timedelta(seconds=1)
    return _set_times(user, expires_at=past, next_refresh_at=past)


def _set_times(user: AbstractBaseUser, **times: Any) -> OAuthToken:
    OAuthToken.objects.filter(user_id=user.pk).update(**times)
    return OAuthToken.objects.get(user_id=user.pk)


@dataclass
class _Grant:
    access_token: str
    refresh_token: str | None
    revoked: bool = False
    # Refresh tokens this grant used before: presenting one again ends the grant, as Frame.io does.
    spent: set[str] = field(default_factory=set)


class FakeFrameio:
    """Answers Frame.io's OAuth endpoints (at the configured ``TOKEN_URL``, ``REVOKE_URL`` and
    ``USERINFO_URL``) and the API at https://api.frame.io, through ``responses``. Any other
    request fails, so nothing reaches the network.

    Counts what it was asked (``refreshes``, ``revocations``) and holds the API's answers:
    ``frameio.api("GET", "/v4/accounts", json={...})``. An API request with an access token this
    fake did not issue, or one it has replaced or revoked, gets a 401.
    """

    # The one in a ``with`` block, which connect() issues its grants from.
    active: FakeFrameio | None = None

    def __init__(self) -> None:
        self.refreshes = 0
        self.revocations = 0
        self.user_info: dict[str, Any] = {"id": "frameio-user", "email": "user@example.com"}
        self._grants: list[_Grant] = []
        self._mock: Any = None

    # --- what a test sets up ---------------------------------------------------------------

    def issue(self, *, refresh: bool = True, expires_in: int = 3600) -> provider.TokenResponse:
        """A new grant this fake knows, as its token endpoint would have answered it."""
        grant = _Grant(_token("fake-access"), _token("fake-refresh") if refresh else None)
        self._grants.append(grant)
        return provider.TokenResponse(
            access_token=grant.access_token,
            token_type="Bearer",
            expires_in=expires_in,
            refresh_token=grant.refresh_token,
            scope=conf.scope_string,
        )

    def api(self, method: str, path: str, *, json: Any = None, status: int = 200) -> None:
        """Answer ``method`` ``path`` on the Frame.io API with ``json`` (for a live token)."""

        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            if not self._live(request.headers.get("Authorization", "")):
                return 401, {}, '{"errors": [{"detail": "invalid token"}]}'
            return status, {"Content-Type": "application/json"}, _dumps(json)

        self._mock.add_callback(method.upper(), f"{API_ORIGIN}{path}", callback=answer)

    def revoke_everything(self) -> None:
        """As when the user removes the app at Frame.io: every grant ends."""
        for grant in self._grants:
            grant.revoked = True

    def end_access_tokens(self) -> None:
        """As when Frame.io ends access tokens before their expiry: the API refuses the current
        ones with a 401, and a refresh still works."""
        for grant in self._grants:
            grant.access_token = _token("ended")

    # --- the context ------------------------------------------------------------------------

    def __enter__(self) -> FakeFrameio:
        import responses

        self._mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        self._mock.__enter__()
        self._mock.add_callback("POST", conf.token_url, callback=self._token_endpoint)
        self._mock.add_callback("POST", conf.revoke_url, callback=self._revoke_endpoint)
        self._mock.add_callback("GET", conf.userinfo_url, callback=self._userinfo_endpoint)
        FakeFrameio.active = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        FakeFrameio.active = None
        self._mock.__exit__(*exc_info)
        self._mock = None

    # --- the endpoints ----------------------------------------------------------------------

    def _token_endpoint(self, request: Any) -> tuple[int, dict[str, str], str]:
        form = {k: v[0] for k, v in parse_qs(request.body or "").items()}
        if form.get("grant_type") != "refresh_token":
            return 400, {}, '{"error": "unsupported_grant_type"}'
        presented = form.get("refresh_token", "")
        grant = next((g for g in self._grants if g.refresh_token == presented), None)
        if grant is None:
            reused = next((g for g in self._grants if presented in g.spent), None)
            if reused is not None:
                reused.revoked = True  # reuse of a rotated token ends the whole grant
            return 400, {}, '{"error": "invalid_grant"}'
        if grant.revoked:
            return 400, {}, '{"error": "invalid_grant"}'
        self.refreshes += 1
        grant.spent.add(presented)
        grant.access_token, grant.refresh_token = _token("fake-access"), _token("fake-refresh")
        answer = {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "token_type": "bearer",
            "expires_in": conf.preset.access_token_lifetime,
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)

    def _revoke_endpoint(self, request: Any) -> tuple[int, dict[str, str], str]:
        token = parse_qs(request.body or "").get("token", [""])[0]
        for grant in self._grants:
            if token in (grant.access_token, grant.refresh_token):
                grant.revoked = True
        self.revocations += 1
        return 200, {}, ""

    def _userinfo_endpoint(self, request: Any) -> tuple[int, dict[str, str], str]:
        if not self._live(request.headers.get("Authorization", "")):
            return 401, {}, '{"error": "invalid_token"}'
        envelope = conf.preset.userinfo_envelope
        body = {envelope: self.user_info} if envelope else self.user_info
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _live(self, authorization: str) -> bool:
        bearer = authorization.removeprefix("Bearer ")
        return any(g.access_token == bearer and not g.revoked for g in self._grants)

    def requests_to(self, url_prefix: str) -> list[Any]:
        """The requests this fake answered whose URL starts with ``url_prefix``."""
        return [c.request for c in self._mock.calls if c.request.url.startswith(url_prefix)]


def _token(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(12)}"


def _dumps(value: Any) -> str:
    return "" if value is None else json.dumps(value)


if pytest is not None:

    @pytest.fixture
    def frameio() -> Iterator[FakeFrameio]:
        """A :class:`FakeFrameio` for the test, active for its whole duration."""
        with FakeFrameio() as fake:
            yield fake
