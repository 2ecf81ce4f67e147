"""Frame.io's official Python SDK (frameio 4.x) taking its token from the app: the sync
client with a callable, the async client with an async callable or the app's async session."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from asgiref.sync import SyncToAsync
from django.db import connections
from django.test import override_settings
from frameio import AsyncFrameio, Frameio

from frameio_oauth import services
from frameio_oauth.async_api import async_session_for
from tests.support.fake_provider import rotating_provider
from tests.support.settings import FRAMEIO_OAUTH

ME = {"data": {"id": "u1", "email": "alice@frame.example", "name": "Alice"}}


class Api:
    """Frame.io's API at its real origin, as an httpx transport: ``/v4/me`` for one token."""

    def __init__(self, accepted: str) -> None:
        self.accepted = accepted
        self.bearers: list[str | None] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.bearers.append(request.headers.get("Authorization"))
        assert (request.url.host, request.url.path) == ("api.frame.io", "/v4/me")
        if request.headers.get("Authorization") != f"Bearer {self.accepted}":
            return httpx.Response(401, json={"errors": [{"title": "Unauthorized"}]})
        return httpx.Response(200, json=ME)

    async def aanswer(self, request: httpx.Request) -> httpx.Response:
        return self.answer(request)


@pytest.mark.django_db
def test_the_sync_client_takes_a_callable_bound_to_get_access_token(
    user: Any, make_token: Any
) -> None:
    token = make_token(user)
    api = Api(token.access_token)
    client = Frameio(
        token=lambda: services.get_access_token(user),
        httpx_client=httpx.Client(transport=httpx.MockTransport(api.answer)),
    )
    assert client.users.show().data.id == "u1"
    assert api.bearers == [f"Bearer {token.access_token}"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_async_client_takes_an_async_callable_bound_to_aget_access_token(
    user: Any, make_token: Any
) -> None:
    token = make_token(user)
    api = Api(token.access_token)

    async def call() -> str:
        client = AsyncFrameio(
            # The SDK also calls token= on every request, on the event loop: keep it a string.
            token="unused",
            async_token=lambda: services.aget_access_token(user),
            httpx_client=httpx.AsyncClient(transport=httpx.MockTransport(api.aanswer)),
        )
        return (await client.users.show()).data.id

    try:
        assert asyncio.run(call()) == "u1"
    finally:
        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)
    assert api.bearers == [f"Bearer {token.access_token}"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_async_client_on_the_apps_async_session_recovers_from_a_401(
    user: Any, make_token: Any
) -> None:
    bearers: list[str | None] = []
    with rotating_provider() as (url, provider):
        oauth = {**FRAMEIO_OAUTH, "TOKEN_URL": url}
        with override_settings(FRAMEIO_OAUTH=oauth):
            token = make_token(user, refresh_token=provider.issue())

            async def api(request: httpx.Request) -> httpx.Response:
                # The stored token was revoked early; only the one a refresh gives is taken.
                bearer = request.headers.get("Authorization")
                bearers.append(bearer)
                current = await services.aget_access_token(user)
                if provider.requests and bearer == f"Bearer {current}":
                    return httpx.Response(200, json=ME)
                return httpx.Response(401, json={"errors": [{"title": "Unauthorized"}]})

            async def call() -> str:
                session = async_session_for(user, transport=httpx.MockTransport(api))
                client = AsyncFrameio(token="unused", httpx_client=session)
                return (await client.users.show()).data.id

            try:
                assert asyncio.run(call()) == "u1"
            finally:
                SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)
    assert provider.requests == 1
    assert bearers[0] == f"Bearer {token.access_token}"
    assert len(bearers) == 2
    assert bearers[1] != bearers[0]
