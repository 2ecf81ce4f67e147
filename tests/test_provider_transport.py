"""HTTP to the authorization server: an encoded form post asking for JSON, over one kept-alive
connection, with the environment's proxies; failures to connect are transient; a body is read
under a deadline and a 1 MiB cap, and a redirect is never followed. The deadline against every
kind of misbehaving socket is in test_provider_deadline.py."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import responses
from django.test import override_settings

from frameio_oauth import provider
from frameio_oauth.exceptions import ProviderError, ProviderUnavailable
from tests.support.frameio import (
    GOOD,
    PUBLIC_CLIENT,
    TOKEN_URL,
    USERINFO_URL,
    form_of,
    refresh_with,
)
from tests.support.loopback import loopback_server, read_request
from tests.support.settings import FRAMEIO_OAUTH


def test_a_token_request_is_an_encoded_form_post_that_asks_for_json(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, json=GOOD)
    awkward = "a+b/c=d&scope=admin %"
    provider.refresh_grant(awkward, scope="account.read offline")
    request = provider_http.calls[0].request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("frameio-oauth ")
    assert int(request.headers["Content-Length"]) == len(request.body)
    # Encoded, not pasted: the awkward token comes back whole and smuggles in no field.
    assert form_of(provider_http.calls[0])["refresh_token"] == awkward
    assert form_of(provider_http.calls[0])["scope"] == "account.read offline"


def test_credentials_in_the_token_url_become_http_basic_as_requests_does(
    provider_http: responses.RequestsMock,
) -> None:
    url = TOKEN_URL.replace("https://", "https://proxy-user:proxy%20pass@")
    provider_http.post(url, json=GOOD)
    with override_settings(FRAMEIO_OAUTH={**PUBLIC_CLIENT, "TOKEN_URL": url}):
        provider.refresh_grant("RT")
    expected = base64.b64encode(b"proxy-user:proxy pass").decode()
    assert provider_http.calls[0].request.headers["Authorization"] == f"Basic {expected}"


def test_provider_calls_take_proxies_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, provider_http: responses.RequestsMock
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "api.frame.io")
    provider.reread_environment()
    provider_http.post(TOKEN_URL, json=GOOD)
    provider_http.get(USERINFO_URL, json={"id": "fio-1"})
    try:
        provider.refresh_grant("RT")
        provider.fetch_userinfo("AT")
    finally:
        provider.reread_environment()
    token_call, api_call = (call.request.req_kwargs["proxies"] for call in provider_http.calls)
    assert token_call.get("https") == "http://proxy.internal:3128"
    assert "https" not in api_call


def test_a_timeout_is_transient(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderUnavailable, match="timed out"):
        refresh_with(provider_http, body=requests.ConnectTimeout())


def test_a_connection_error_is_transient(provider_http: responses.RequestsMock) -> None:
    with pytest.raises(ProviderUnavailable, match="ConnectionError"):
        refresh_with(provider_http, body=requests.ConnectionError())


def test_a_redirect_is_not_followed_with_the_refresh_token(
    provider_http: responses.RequestsMock,
) -> None:
    with pytest.raises(ProviderError, match="307"):
        refresh_with(provider_http, status=307, headers={"Location": "https://x.example/"})
    assert all(call.request.url == TOKEN_URL for call in provider_http.calls)


def test_a_declared_huge_body_is_refused_before_reading(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(
        TOKEN_URL, body=json.dumps(GOOD), headers={"Content-Length": str(5 * 1024 * 1024)}
    )
    with pytest.raises(ProviderError, match="over"):
        provider.refresh_grant("RT")


# --- deadline and size cap, against a real socket ---------------------------------------------


@pytest.fixture
def slow_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A loopback HTTP server whose behaviour each test sets in the returned dict."""
    behaviour: dict[str, Any] = {}

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        behaviour["connections"] = behaviour.get("connections", 0) + 1
        read_request(conn)
        behaviour["handler"](conn, stop)

    with loopback_server(handle) as base:
        yield f"{base}/oauth2/token", behaviour


def test_a_server_dripping_its_body_is_cut_off_at_the_deadline(
    slow_server: tuple[str, dict[str, Any]],
) -> None:
    url, behaviour = slow_server

    def drip(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{")
        while not stop.wait(0.1):
            try:
                conn.sendall(b" ")
            except OSError:
                return

    behaviour["handler"] = drip
    started = time.monotonic()
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url, "HTTP_TIMEOUT": 1}):
        with pytest.raises(ProviderUnavailable, match=r"deadline|reading"):
            provider.refresh_grant("RT")
    assert time.monotonic() - started < 2.5


def test_provider_calls_share_one_kept_alive_connection(
    slow_server: tuple[str, dict[str, Any]],
) -> None:
    # Against Frame.io every new connection is a TLS handshake: reading an answer to its end
    # must hand the connection back for the next call, not close it.
    url, behaviour = slow_server
    body = json.dumps({"access_token": "AT", "refresh_token": "RT2", "expires_in": 3600})
    answer = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()

    def keep_alive(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(answer)
        conn.settimeout(0.2)
        while not stop.is_set():
            try:
                read_request(conn)
            except TimeoutError:
                continue
            except OSError:
                return
            conn.sendall(answer)

    behaviour["handler"] = keep_alive
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url}):
        answers = [provider.refresh_grant(f"RT{i}") for i in range(3)]
    assert [answer.access_token for answer in answers] == ["AT", "AT", "AT"]
    assert behaviour["connections"] == 1


def test_a_server_that_never_answers_times_out(slow_server: tuple[str, dict[str, Any]]) -> None:
    url, behaviour = slow_server
    behaviour["handler"] = lambda conn, stop: stop.wait(5)
    started = time.monotonic()
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url, "HTTP_TIMEOUT": 1}):
        with pytest.raises(ProviderUnavailable, match="timed out"):
            provider.refresh_grant("RT")
    assert time.monotonic() - started < 2.5


def test_a_body_over_one_mebibyte_is_refused(slow_server: tuple[str, dict[str, Any]]) -> None:
    url, behaviour = slow_server

    def huge(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        chunk = b" " * 65536
        try:
            for _ in range(40):  # 2.5 MiB without a Content-Length
                conn.sendall(chunk)
        except OSError:
            return  # the client stopped reading and closed: what the cap should do

    behaviour["handler"] = huge
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": url}):
        with pytest.raises(ProviderError, match="over 1048576 bytes"):
            provider.refresh_grant("RT")


def test_a_bearer_that_cannot_be_encoded_is_a_provider_error_on_a_real_socket() -> None:
    # responses skips http.client's header encoding; a real connection does not.
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    with loopback_server(answer) as url:
        with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "USERINFO_URL": f"{url}/me"}):
            with pytest.raises(ProviderError, match="could not be encoded"):
                provider.fetch_userinfo("AT-\u20ac")


def test_a_thread_pool_of_32_keeps_its_connections_for_the_next_calls() -> None:
    # A thread-pool worker makes up to its concurrency in calls at once: each connection goes
    # back to the pool afterwards, not only the first ten (requests' default pool size).
    opened: list[int] = []
    together = threading.Barrier(32)
    body = json.dumps({"access_token": "AT", "expires_in": 3600}).encode()

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            opened.append(1)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            together.wait(10)  # all 32 calls in flight at once, in both rounds
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Listener(ThreadingHTTPServer):
        # 32 connects at once overflowed the default backlog of 5 on a busy CI machine.
        request_queue_size = 64
        daemon_threads = True

    server = Listener(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/oauth2/token"
    # Room for 32 threads to be scheduled on two cores; the deadline is not what is tested.
    oauth = {**FRAMEIO_OAUTH, "TOKEN_URL": url, "HTTP_TIMEOUT": 10}
    try:
        with override_settings(FRAMEIO_OAUTH=oauth):
            rounds = []
            for _ in range(2):
                calls = [
                    threading.Thread(target=provider.refresh_grant, args=(f"RT{i}",))
                    for i in range(32)
                ]
                for call in calls:
                    call.start()
                for call in calls:
                    call.join(10)
                rounds.append(len(opened))
    finally:
        server.shutdown()
        server.server_close()
    # The second round opened no connection of its own.
    assert rounds == [32, 32]
