"""Async callers: services.aget_access_token and the async API session, on a real event loop
and PostgreSQL, beside sync callers of the same row, and under a real ASGI server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connection, connections
from django.db.backends.utils import CursorWrapper
from django.test import override_settings
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.views.debug import ExceptionReporter

from frameio_oauth import services
from frameio_oauth.async_api import AsyncFrameioAuth, async_session_for
from frameio_oauth.exceptions import NotConnected, ReauthorizationRequired
from frameio_oauth.models import OAuthToken
from tests.support.fake_provider import ProviderState, rotating_provider
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.tokens import stored

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API = "https://api.frame.io/v4/me"
# A module constant, not a local: the test's own frame is in the report too.
BEARER = "at-never-in-a-report-1c9f"


@pytest.fixture(autouse=True)
def connections_closed_in_worker_threads() -> Iterator[None]:
    """Async ORM calls run in asgiref's one worker thread, whose connection would outlive the
    test (and keep the test database from being dropped at the end)."""
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


async def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function`` in a thread of its own, its database connection closed afterwards."""

    def run() -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


@contextmanager
def counted_queries() -> Iterator[list[str]]:
    """Every statement any thread sends (async ORM calls run in a worker thread, where a
    connection's own query capture does not look)."""
    seen: list[str] = []
    real = CursorWrapper._execute

    def counted(self: CursorWrapper, sql: str, *args: Any) -> Any:
        seen.append(sql)
        return real(self, sql, *args)

    CursorWrapper._execute = counted  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        CursorWrapper._execute = real  # type: ignore[method-assign]


@pytest.fixture
def provider() -> Iterator[ProviderState]:
    """A rotating token endpoint with reuse detection, answering after 0.3 s."""
    with (
        rotating_provider() as (url, state),
        override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url}),
    ):
        state.delay = 0.3
        yield state


def due_token_of(user: Any, make_token: Any, provider: ProviderState) -> OAuthToken:
    token: OAuthToken = make_token(
        user,
        refresh_token=provider.issue(),
        expires_at=timezone.now() + timedelta(seconds=90),
        next_refresh_at=timezone.now() - timedelta(seconds=1),
    )
    return token


@pytest.mark.asyncio
async def test_a_fresh_token_is_handed_to_an_async_caller_in_one_query(
    user: Any, make_token: Any
) -> None:
    token = await in_thread(make_token, user)
    with counted_queries() as queries:
        assert await services.aget_access_token(user) == token.access_token
    assert len(queries) == 1


@pytest.mark.asyncio
async def test_an_async_caller_without_a_token_is_told_it_is_not_connected(user: Any) -> None:
    with pytest.raises(NotConnected):
        await services.aget_access_token(user)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (OAuthToken.Status.REVOKED, NotConnected),
        (OAuthToken.Status.REAUTH_REQUIRED, ReauthorizationRequired),
    ],
)
async def test_an_async_caller_gets_the_same_errors_as_a_sync_one(
    user: Any, make_token: Any, status: str, error: type[Exception]
) -> None:
    await in_thread(make_token, user, status=status)
    with pytest.raises(error):
        await services.aget_access_token(user)
    with pytest.raises(error):
        await in_thread(services.get_access_token, user)


@pytest.mark.asyncio
async def test_a_due_token_is_refreshed_for_an_async_caller_while_the_loop_runs_on(
    user: Any, make_token: Any, provider: ProviderState
) -> None:
    token = await in_thread(due_token_of, user, make_token, provider)
    ticks: list[float] = []

    async def ticking() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(ticking())
    started = time.monotonic()
    new = await services.aget_access_token(user)
    took = time.monotonic() - started
    ticker.cancel()
    assert provider.requests == 1
    assert new != token.access_token
    assert new == (await in_thread(stored, token)).access_token
    # The 0.3 s provider call ran in a thread: the loop kept ticking (about 30 times; a blocked
    # loop ticks once at most, and a busy machine may stall it for some of them).
    assert took >= 0.3
    during = [tick for tick in ticks if started < tick < started + took]
    assert len(during) >= 3


@pytest.mark.asyncio
async def test_async_and_sync_callers_racing_on_one_due_token_make_one_provider_call(
    user: Any, make_token: Any, provider: ProviderState
) -> None:
    await in_thread(due_token_of, user, make_token, provider)
    go = threading.Event()
    sync_results: list[str] = []

    def sync_caller() -> None:
        go.wait(10)
        sync_results.append(services.get_access_token(user))
        connection.close()

    threads = [threading.Thread(target=sync_caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    go.set()
    async_results = await asyncio.gather(*(services.aget_access_token(user) for _ in range(16)))
    await asyncio.to_thread(lambda: [thread.join(30) for thread in threads])
    assert provider.requests == 1
    assert provider.reuses == 0
    assert len(sync_results) == 8
    assert len(set(async_results) | set(sync_results)) == 1


# --- the async API session ---------------------------------------------------------------------


class FakeApi:
    """Frame.io's API as an httpx transport: 401 for any token but ``accepted``."""

    def __init__(self, accepted: Callable[[], str]) -> None:
        self.accepted = accepted
        self.seen: list[tuple[str, str | None]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        bearer = request.headers.get("Authorization")
        self.seen.append((str(request.url), bearer))
        if request.url.host != "api.frame.io":
            return httpx.Response(200, json={"elsewhere": True})
        if bearer != f"Bearer {await in_thread(self.accepted)}":
            return httpx.Response(401, json={"message": "Unauthorized"})
        return httpx.Response(200, json={"data": {"id": "u1"}})


@pytest.mark.asyncio
async def test_the_async_session_sends_the_bearer_to_the_frameio_api(
    user: Any, make_token: Any
) -> None:
    token = await in_thread(make_token, user)
    api = FakeApi(lambda: token.access_token)
    async with async_session_for(user, transport=httpx.MockTransport(api)) as client:
        response = await client.get(API)
    assert response.status_code == 200
    assert api.seen == [(API, f"Bearer {token.access_token}")]


@pytest.mark.asyncio
async def test_the_async_session_sends_no_bearer_anywhere_else(user: Any, make_token: Any) -> None:
    token = await in_thread(make_token, user)
    api = FakeApi(lambda: token.access_token)
    async with async_session_for(user, transport=httpx.MockTransport(api)) as client:
        for url in (
            "https://example.com/v4/me",
            "http://api.frame.io/v4/me",
            "https://api.frame.io.example.com/",
            "https://api.frame.io:8443/",
        ):
            await client.get(url)
    assert [bearer for _, bearer in api.seen] == [None, None, None, None]


@pytest.mark.asyncio
async def test_a_401_replaces_the_token_under_the_lock_and_retries_once(
    user: Any, make_token: Any, provider: ProviderState
) -> None:
    token = await in_thread(
        make_token, user, refresh_token=provider.issue(), last_refreshed_at=None
    )
    # The API no longer takes the stored token (revoked early); it takes the next one.
    api = FakeApi(lambda: stored(token).access_token if provider.requests else "revoked-early")
    async with async_session_for(user, transport=httpx.MockTransport(api)) as client:
        response = await client.get(API)
    assert response.status_code == 200
    assert provider.requests == 1
    new = (await in_thread(stored, token)).access_token
    assert api.seen == [(API, f"Bearer {token.access_token}"), (API, f"Bearer {new}")]


@pytest.mark.asyncio
async def test_a_second_401_is_handed_back_without_another_refresh(
    user: Any, make_token: Any, provider: ProviderState
) -> None:
    await in_thread(make_token, user, refresh_token=provider.issue())
    api = FakeApi(lambda: "nothing-is-accepted")
    async with async_session_for(user, transport=httpx.MockTransport(api)) as client:
        response = await client.get(API)
    assert response.status_code == 401
    assert provider.requests == 1
    assert len(api.seen) == 2


@pytest.mark.asyncio
async def test_a_401_after_someone_else_replaced_the_token_costs_no_refresh(
    user: Any, make_token: Any, provider: ProviderState
) -> None:
    token = await in_thread(make_token, user, refresh_token=provider.issue())
    replaced = "at-replaced-meanwhile"

    def replace_meanwhile() -> str:
        # Another process refreshed between our read and the API's answer.
        row = stored(token)
        if row.access_token != replaced:
            row.access_token = replaced
            row.save(update_fields=["access_token", "updated_at"])
        return replaced

    api = FakeApi(replace_meanwhile)
    async with async_session_for(user, transport=httpx.MockTransport(api)) as client:
        response = await client.get(API)
    assert response.status_code == 200
    assert provider.requests == 0
    assert api.seen[-1] == (API, f"Bearer {replaced}")


@pytest.mark.asyncio
async def test_a_401_after_a_redirect_to_another_origin_costs_no_refresh(
    user: Any, make_token: Any, provider: ProviderState
) -> None:
    await in_thread(make_token, user, refresh_token=provider.issue())
    seen: list[tuple[str, str | None]] = []

    async def api(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("Authorization")))
        if request.url.host == "api.frame.io":
            return httpx.Response(302, headers={"Location": "https://cdn.example.com/file"})
        return httpx.Response(401)

    transport = httpx.MockTransport(api)
    async with async_session_for(user, transport=transport, follow_redirects=True) as client:
        response = await client.get("https://api.frame.io/v4/files/1/download")
    assert response.status_code == 401
    assert provider.requests == 0
    assert [host for host, _ in seen] == ["api.frame.io", "cdn.example.com"]
    assert seen[1][1] is None


@pytest.mark.asyncio
async def test_a_streamed_body_is_sent_again_after_a_401_over_a_real_connection(
    user: Any, make_token: Any, provider: ProviderState
) -> None:
    bodies: list[bytes] = []
    answers = iter([401, 200])

    class Api(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.headers.get("Transfer-Encoding") == "chunked":
                body = b""
                while (size := int(self.rfile.readline().strip(), 16)) > 0:
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            bodies.append(body)
            self.send_response(next(answers))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api_url = f"http://127.0.0.1:{server.server_address[1]}/v4/me"
    try:
        # USERINFO_URL's origin gets the bearer too: here, the loopback "API".
        oauth = {**FRAMEIO_OAUTH, **settings.FRAMEIO_OAUTH, "USERINFO_URL": api_url}
        with override_settings(FRAMEIO_OAUTH=oauth):
            await in_thread(make_token, user, refresh_token=provider.issue())

            async def body() -> AsyncIterator[bytes]:
                yield b"part one, "
                yield b"part two"

            async with async_session_for(user) as client:
                response = await client.post(api_url, content=body())
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    assert provider.requests == 1
    assert bodies == [b"part one, part two"] * 2


@pytest.mark.asyncio
async def test_a_failed_replacement_after_a_401_shows_no_bearer_in_the_error_report(
    user: Any, make_token: Any, provider: ProviderState
) -> None:
    # A refresh token the provider does not know: the replacement ends in invalid_grant.
    await in_thread(make_token, user, access_token=BEARER, refresh_token="rt-unknown")
    transport = httpx.MockTransport(lambda request: httpx.Response(401))
    try:
        async with async_session_for(user, transport=transport) as client:
            await client.get(API)
    except ReauthorizationRequired:
        exc_info = sys.exc_info()
    else:
        raise AssertionError("the replacement did not fail")
    report = ExceptionReporter(None, *exc_info, is_email=True).get_traceback_html()
    assert "_replace_rejected" in report
    assert BEARER not in report


def test_headers_given_to_the_session_replace_its_defaults(user: Any) -> None:
    client = async_session_for(user, headers={"accept": "text/csv", "X-Trace": "1"})
    assert client.headers.get_list("Accept") == ["text/csv"]
    assert client.headers["X-Trace"] == "1"
    listed = async_session_for(user, headers=[("X-Trace", "2")])
    assert listed.headers["X-Trace"] == "2"


@pytest.mark.asyncio
async def test_a_lazy_user_not_loaded_yet_gets_an_error_that_says_what_to_pass(
    user: Any,
) -> None:
    lazy = SimpleLazyObject(lambda: user)
    with pytest.raises(TypeError, match=r"await request.auser\(\)"):
        await services.aget_access_token(lazy)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"await request.auser\(\)"):
        async_session_for(lazy)  # type: ignore[arg-type]


def test_the_async_auth_refuses_a_sync_client(user: Any) -> None:
    with httpx.Client(auth=AsyncFrameioAuth(user)) as client, pytest.raises(RuntimeError):
        client.get(API)


# --- under a real ASGI server ------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_connections(app_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app_name]
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def test_64_requests_to_an_async_view_under_uvicorn_make_one_provider_call_and_leave_no_connection(
    user: Any, make_token: Any, tmp_path: Any
) -> None:
    app_name = f"asgi-{os.getpid()}"
    with rotating_provider() as (url, provider):
        provider.delay = 0.3
        with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url}):
            due_token_of(user, make_token, provider)  # a grant of this server
        port = _free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.support.settings",
            "FRAMEIO_TEST_PGDATABASE": connection.settings_dict["NAME"],
            "FRAMEIO_TEST_PG_APPNAME": app_name,
            "FRAMEIO_TEST_OAUTH_JSON": json.dumps({"TOKEN_URL": url}),
        }
        log = (tmp_path / "uvicorn.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.support.asgi:application",
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    httpx.get(f"{base}/admin/login/", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)

            async def burst() -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                    return await asyncio.gather(
                        *(client.get(f"/async-token/{user.pk}/") for _ in range(64))
                    )

            responses = asyncio.run(burst())
            assert [r.status_code for r in responses] == [200] * 64, log.name
            assert len({r.json()["token"] for r in responses}) == 1
            assert provider.requests == 1
            assert provider.reuses == 0
            # Each request's thread closed its connection with the request (CONN_MAX_AGE 0).
            deadline = time.monotonic() + 10
            while _server_connections(app_name) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _server_connections(app_name) == 0
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
