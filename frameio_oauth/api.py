"""The Frame.io API session: a ``requests`` session that sends the user's current token to
the Frame.io API, and nowhere else, refreshing once if the API answers 401 (docs/api.md)::

    from frameio_oauth.api import session_for
    response = session_for(request.user).get("https://api.frame.io/v4/me", timeout=10)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import requests
from django.contrib.auth.base_user import AbstractBaseUser
from django.views.decorators.debug import sensitive_variables

from . import services
from .conf import conf

# Frame.io's API, whichever authorization server issued the token (both presets use it).
FRAMEIO_API_ORIGIN = "https://api.frame.io"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SENT = "_frameio_oauth_sent_token"
_RETRIED = "_frameio_oauth_retried"
_RESENDABLE = "_frameio_oauth_resendable"


def origin_of(url: str | None) -> str | None:
    """``scheme://host:port`` of ``url``, normalised (lower case, IDNA, default port explicit,
    no trailing dot, no user info), or None if it has none."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").rstrip(".").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None
    scheme = parts.scheme.lower()
    port = port or _DEFAULT_PORTS.get(scheme)
    if not host or port is None:
        return None
    return f"{scheme}://{host}:{port}"


def api_origins() -> frozenset[str]:
    """The origins that get the bearer token: Frame.io's API and that of ``USERINFO_URL``."""
    return _api_origins(conf.userinfo_url)


@lru_cache(maxsize=8)
def _api_origins(userinfo_url: str) -> frozenset[str]:
    origins = {origin_of(FRAMEIO_API_ORIGIN), origin_of(userinfo_url)}
    return frozenset(origin for origin in origins if origin is not None)


def _resendable(body: Any) -> bool:
    # A file or generator body was read while sending; sending it again would send nothing.
    return body is None or isinstance(body, bytes | str)


class FrameioAuth(requests.auth.AuthBase):
    def __init__(self, user: AbstractBaseUser) -> None:
        self.user = user

    # Both hold a bearer token in their frames: hidden from Django's error reports.
    @sensitive_variables()
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin_of(request.url) not in api_origins():
            return request
        token = services.get_access_token(self.user)
        request.headers["Authorization"] = f"Bearer {token}"
        setattr(request, _SENT, token)
        # Judged before sending: afterwards a stream is spent (and may even be swapped).
        setattr(request, _RESENDABLE, _resendable(request.body))
        request.register_hook("response", self._retry_once_on_401)  # type: ignore[no-untyped-call]
        return request

    @sensitive_variables()
    def _retry_once_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, _RETRIED, False):
            return response
        sent = getattr(request, _SENT, None)
        # A redirected request is a copy without _SENT; the origin check is belt and braces.
        if sent is None or origin_of(request.url) not in api_origins():
            return response
        token = services.replace_rejected_token(self.user, sent)
        if not getattr(request, _RESENDABLE, False):
            return response
        # Drain and release the connection before reusing the pool for the retry.
        response.content  # noqa: B018
        response.close()
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {token}"
        setattr(retry, _SENT, token)
        setattr(retry, _RETRIED, True)
        # Sent through the adapter, which runs no hooks, so this hook never sees the retry's
        # answer; _RETRIED keeps it so should the copy ever be sent through a Session.
        new_response: requests.Response = response.connection.send(retry, **kwargs)
        new_response.history.append(response)
        new_response.request = retry
        return new_response


class FrameioSession(requests.Session):
    @sensitive_variables()
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # Below here requests and urllib3 hold the Authorization header in plain dicts; this
        # hides their frames' locals from Django's error reports too.
        return super().send(request, **kwargs)


def session_for(user: AbstractBaseUser) -> requests.Session:
    """A ``requests.Session`` that authenticates as ``user`` at the Frame.io API (and nowhere
    else) and refreshes the token once when the API answers 401."""
    session = FrameioSession()
    session.auth = FrameioAuth(user)
    session.headers["Accept"] = "application/json"
    return session
