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
    client): the user's token on requests to the Frame.io API only; on a 401 from the API, the
    token is replaced under the row lock (unless someone already did) and the request sent once
    more.
    """

    def __init__(self, user: AbstractBaseUser) -> None:
        self.user = services.loaded_user(user)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, Any, None]:
        raise RuntimeError(
            "AsyncFrameioAuth works with httpx.AsyncClient; use frameio_oauth.api.session_for "
            "for synchronous code"
        )

    # The token is only ever a local of the helpers below, which Django's error reports hide
    # (it cannot hide an async generator's locals).
    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if origin_of(str(request.url)) not in api_origins():
            yield request
            return
        # A streamed body is read now, so that it can be sent again after a 401.
        await request.aread()
        await _authorize(request, self.user)
        response = yield request
        # After redirects, the last answer may come from elsewhere (httpx dropped the bearer).
        if response.status_code != 401 or origin_of(str(response.url)) not in api_origins():
            return
        await sync_to_async(_replace_rejected)(request, self.user)
        yield request


@sensitive_variables()
async def _authorize(request: httpx.Request, user: AbstractBaseUser) -> None:
    token = await services.aget_access_token(user)
    request.headers["Authorization"] = f"Bearer {token}"


@sensitive_variables()
def _replace_rejected(request: httpx.Request, user: AbstractBaseUser) -> None:
    # Run in a worker thread with the request, not the token, as its argument: asgiref's
    # frames in between show their arguments in error reports.
    rejected = request.headers["Authorization"].removeprefix("Bearer ")
    token = services.replace_rejected_token(user, rejected)
    request.headers["Authorization"] = f"Bearer {token}"


def async_session_for(user: AbstractBaseUser, **client_options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that authenticates as ``user`` at the Frame.io API (and
    nowhere else) and refreshes the token once when the API answers 401. ``client_options``
    go to ``httpx.AsyncClient`` (a ``timeout``, a ``transport``...). Pass a loaded user
    (``await request.auser()``), not the lazy ``request.user``."""
    headers = httpx.Headers({"Accept": "application/json"})
    # Any form httpx takes; a header given here replaces the default of the same name.
    headers.update(httpx.Headers(client_options.pop("headers", None)))
    client_options.setdefault("timeout", DEFAULT_TIMEOUT)
    return httpx.AsyncClient(auth=AsyncFrameioAuth(user), headers=headers, **client_options)
