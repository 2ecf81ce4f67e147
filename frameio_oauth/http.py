"""``requests`` integration: a session that always sends the user's current Frame.io token.

    from frameio_oauth.http import session_for
    response = session_for(request.user).get("https://api.frame.io/v2/me", timeout=10)

Every request asks :func:`services.get_access_token` for the token (one SQL query when it is
fresh). If the API still answers 401, the token is refreshed once, under the row lock and only
if the token that was sent is still the stored one, and the request is retried once.
"""

from __future__ import annotations

from typing import Any

import requests
from django.contrib.auth.base_user import AbstractBaseUser
from django.views.decorators.debug import sensitive_variables

from . import services

_SENT = "_frameio_oauth_sent_token"
_RETRIED = "_frameio_oauth_retried"


class FrameioAuth(requests.auth.AuthBase):
    def __init__(self, user: AbstractBaseUser) -> None:
        self.user = user

    # Both hold a bearer token in their frames: hidden from Django's error reports.
    @sensitive_variables()
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = services.get_access_token(self.user)
        request.headers["Authorization"] = f"Bearer {token}"
        setattr(request, _SENT, token)
        request.register_hook("response", self._retry_once_on_401)  # type: ignore[no-untyped-call]
        return request

    @sensitive_variables()
    def _retry_once_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, _RETRIED, False):
            return response
        sent = getattr(request, _SENT, None)
        if sent is None:
            return response
        token = services.replace_rejected_token(self.user, sent)
        # Drain and release the connection before reusing the pool for the retry.
        response.content  # noqa: B018
        response.close()
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {token}"
        setattr(retry, _SENT, token)
        setattr(retry, _RETRIED, True)
        # The copy keeps this hook; _RETRIED stops it from firing a second time.
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
    """A ``requests.Session`` that authenticates as ``user`` at Frame.io and refreshes itself."""
    session = FrameioSession()
    session.auth = FrameioAuth(user)
    session.headers["Accept"] = "application/json"
    return session
