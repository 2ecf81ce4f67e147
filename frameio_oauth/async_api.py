"""The async twin of :mod:`frameio_oauth.api`: an ``httpx.AsyncClient`` that sends the user's
current token to the Frame.io API, and nowhere else, refreshing once if the API answers 401
(the ``async`` extra; docs/api.md)::

    from frameio_oauth.async_api import async_session_for

    async with async_session_for(await request.auser()) as client:
        response = await client.get("https://api.frame.io/v4/me")
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.base_user import AbstractBaseUser
from django.views.decorators.debug import sensitive_variables

from . import services
from .api import api_origins, origin_of

try:
    import httpx
except ImportError as exc:  # pragma: no cover - the extra is in every test environment
    raise ImportError(
        "frameio_oauth.async_api needs httpx: pip install 'frameio-oauth[async]'"
    ) from exc

# As requests-based calls elsewhere in the app: a slow API never holds a request for long.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class AsyncFrameioAuth(httpx.Auth):
    """Bearer auth for ``httpx.AsyncClient`` (also as ``AsyncFrameio(httpx_client=...)``'s
    client): the user's token on requests to the Frame.io API only; on a 401, the token is
    replaced under the row lock (unless someone already did) and the request sent once more.
    """

    # Read a streamed body up front, so the request can be sent a second time after a 401.
    requires_request_body = True

    def __init__(self, user: AbstractBaseUser) -> None:
        self.user = user

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, Any, None]:
        raise RuntimeError(
            "AsyncFrameioAuth works with httpx.AsyncClient; use frameio_oauth.api.session_for "
            "for synchronous code"
        )

    # Both frames hold a bearer token: hidden from Django's error reports.
    @sensitive_variables()
    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if origin_of(str(request.url)) not in api_origins():
            yield request
            return
        token = await services.aget_access_token(self.user)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        replacement = await _replace_rejected(self.user, token)
        request.headers["Authorization"] = f"Bearer {replacement}"
        yield request


@sensitive_variables()
async def _replace_rejected(user: AbstractBaseUser, rejected: str) -> str:
    # The locked refresh in a worker thread, as aget_access_token runs it.
    replaced: str = await sync_to_async(services.replace_rejected_token)(user, rejected)
    return replaced


def async_session_for(user: AbstractBaseUser, **client_options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that authenticates as ``user`` at the Frame.io API (and
    nowhere else) and refreshes the token once when the API answers 401. ``client_options``
    go to ``httpx.AsyncClient`` (a ``timeout``, a ``transport``...). Pass a loaded user
    (``await request.auser()``), not the lazy ``request.user``."""
    headers = {"Accept": "application/json", **client_options.pop("headers", {})}
    client_options.setdefault("timeout", DEFAULT_TIMEOUT)
    return httpx.AsyncClient(auth=AsyncFrameioAuth(user), headers=headers, **client_options)
