"""Every provider call ends at HTTP_TIMEOUT whatever the server does, against real sockets on
loopback: a connect that never completes, a server that says nothing, headers or a body sent a
byte at a time, a body without end, too much body, a compression bomb, a TLS handshake sent a
byte at a time. A refresh cut short leaves its row as it was, and its lock released."""

from __future__ import annotations

import gzip
import json
import os
import select
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from frameio_oauth import provider, services
from frameio_oauth.exceptions import ProviderError, ProviderUnavailable
from frameio_oauth.models import OAuthToken
from tests.support.loopback import (
    Handler,
    loopback_server,
    read_request,
    self_signed_tls,
    stalled_listener,
)
from tests.support.pg_sessions import other_session, token_row_lock
from tests.support.servers import issued_by
from tests.support.settings import FRAMEIO_OAUTH

BUDGET = 1.0
# The four calls share one transport: the matrix of them is run on a shorter budget.
CALL_BUDGET = 0.5
# Beyond the deadline: the watchdog's grain, closing the connection and raising, and for a
# refresh recording the failure and committing, on a busy two-core CI machine.
SLACK = 0.75
# Every misbehaviour stops by itself after this long, so that a client without a deadline fails
# these tests rather than hang them.
MISBEHAVE_FOR = 6.0
TICK = 0.1
TIMED_OUT = "timed out at its 1 s deadline"
OVER_CAP = "over 1048576 bytes"
GOOD = json.dumps(
    {"access_token": "AT", "refresh_token": "RT2", "expires_in": 3600, "token_type": "bearer"}
).encode()


# --- misbehaving servers ----------------------------------------------------------------------


def answer(body: bytes, *, headers: str = "") -> bytes:
    return (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"{headers}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def until_hung_up(conn: socket.socket, stop: threading.Event) -> None:
    """Wait until the client closes the connection (or the time is up)."""
    conn.settimeout(TICK)
    ends = time.monotonic() + MISBEHAVE_FOR
    while not stop.is_set() and time.monotonic() < ends:
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def trickle(conn: socket.socket, stop: threading.Event, first: bytes, each: bytes) -> None:
    """Send ``first``, then ``each`` once a tick, until the client hangs up or time is up."""
    ends = time.monotonic() + MISBEHAVE_FOR
    try:
        conn.sendall(first)
        while time.monotonic() < ends and not stop.wait(TICK):
            conn.sendall(each)
    except OSError:
        return


def say_nothing(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    until_hung_up(conn, stop)


def dripping(first: bytes, each: bytes) -> Handler:
    def handle(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        trickle(conn, stop, first, each)

    return handle


drip_headers = dripping(b"HTTP/1.1 200 OK\r\nX-Drip: ", b"a")
drip_body = dripping(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{", b" ")
# 2 KiB a tick: the size cap would take a minute to end it, so only the deadline can.
endless_body = dripping(
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"800\r\n" + b" " * 2048 + b"\r\n",
)


def tls_handshake_drip(conn: socket.socket, stop: threading.Event) -> None:
    # The header of a TLS record of 256 bytes of handshake, whose bytes then come one a tick.
    trickle(conn, stop, b"\x16\x03\x03\x01\x00", b"\x00")


def huge_body(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        for _ in range(64):  # 4 MiB as fast as loopback goes, without a Content-Length
            conn.sendall(b" " * 65536)
    except OSError:
        return


def gzipped_whitespace() -> bytes:
    """64 MiB of JSON whitespace, gzipped to about 64 KiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(b" " * (1024 * 1024)) for _ in range(64)]
    return b"".join([*parts, compressor.flush()])


# Compressed once at import: compressing inside a call's budget made it time out under load.
BOMB = gzipped_whitespace()


def gzip_bomb(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    try:
        conn.sendall(answer(BOMB, headers="Content-Encoding: gzip\r\n"))
    except OSError:
        return


def served(handle: Handler, scheme: str = "http") -> Callable[[], AbstractContextManager[str]]:
    @contextmanager
    def serve() -> Iterator[str]:
        with loopback_server(handle) as base:
            yield base.replace("http", scheme, 1)

    return serve


@contextmanager
def never_connecting() -> Iterator[str]:
    with stalled_listener() as (host, port):
        yield f"http://{host}:{port}"


@dataclass(frozen=True)
class Misbehaviour:
    name: str
    serve: Callable[[], AbstractContextManager[str]]
    error: type[Exception] = ProviderUnavailable
    message: str = TIMED_OUT
    # Time-outs take the whole budget; the size cap ends a call sooner.
    takes_the_budget: bool = True


MISBEHAVIOURS = [
    Misbehaviour("a connect that never completes", never_connecting),
    Misbehaviour("a server that says nothing", served(say_nothing)),
    Misbehaviour("headers a byte at a time", served(drip_headers)),
    Misbehaviour("a body a byte at a time", served(drip_body)),
    Misbehaviour("a chunked body without end", served(endless_body)),
    Misbehaviour("a TLS handshake a byte at a time", served(tls_handshake_drip, "https")),
    Misbehaviour("a body over the cap", served(huge_body), ProviderError, OVER_CAP, False),
    Misbehaviour("a gzip bomb", served(gzip_bomb), ProviderError, OVER_CAP, False),
]
SILENT, HEADER_DRIP = MISBEHAVIOURS[1], MISBEHAVIOURS[2]


def oauth_settings(base: str, budget: float = BUDGET) -> dict[str, Any]:
    return {
        **FRAMEIO_OAUTH,
        "TOKEN_URL": f"{base}/oauth2/token",
        "REVOKE_URL": f"{base}/oauth2/revoke",
        "USERINFO_URL": f"{base}/v2/me",
        "HTTP_TIMEOUT": budget,
    }


def timed(call: Callable[[], object], error: type[Exception], message: str) -> float:
    """Seconds ``call`` took to raise ``error``."""
    started = time.monotonic()
    with pytest.raises(error, match=message):
        call()
    return time.monotonic() - started


def assert_took(elapsed: float, case: Misbehaviour, budget: float = BUDGET) -> None:
    assert elapsed <= budget + SLACK
    if case.takes_the_budget:
        assert elapsed >= budget
    else:
        assert elapsed < budget


# --- a refresh, for every misbehaviour --------------------------------------------------------


def raw_row(pk: int) -> tuple[Any, ...]:
    """The row as the database holds it: ciphertexts, expiry, status."""
    fields = ("access_token", "refresh_token", "expires_at", "status")
    columns = ", ".join(
        connection.ops.quote_name(OAuthToken._meta.get_field(name).column) for name in fields
    )
    table = connection.ops.quote_name(OAuthToken._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {table} WHERE id = %s", [pk])
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def idle_in_transaction() -> list[int]:
    """Backends of the test database sitting in an open transaction."""
    with other_session() as other:
        rows = other.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", MISBEHAVIOURS, ids=lambda case: case.name)
def test_a_refresh_ends_at_the_deadline_with_its_row_unchanged_and_unlocked(
    case: Misbehaviour, user: Any, make_token: Callable[..., OAuthToken]
) -> None:
    token = make_token(user)
    before = raw_row(token.pk)
    with case.serve() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
        issued_by(oauth_settings(base))
        elapsed = timed(lambda: services.refresh(token.pk, force=True), case.error, case.message)
    assert_took(elapsed, case)
    assert raw_row(token.pk) == before
    assert OAuthToken.objects.get(pk=token.pk).failure_count == 1
    if connection.vendor == "postgresql":
        assert token_row_lock(token.pk) == "free"
        assert idle_in_transaction() == []


# --- every provider call ----------------------------------------------------------------------

CALLS: dict[str, Callable[[], object]] = {
    "code exchange": lambda: provider.exchange_code(
        "code", redirect_uri="https://site.example/frameio/callback/", code_verifier=None
    ),
    "refresh": lambda: provider.refresh_grant("RT"),
    "revocation": lambda: provider.revoke("RT"),
    "user info": lambda: provider.fetch_userinfo("AT"),
}


@pytest.mark.parametrize("case", [SILENT, HEADER_DRIP], ids=lambda case: case.name)
@pytest.mark.parametrize("call", CALLS)
def test_every_provider_call_ends_at_the_deadline(call: str, case: Misbehaviour) -> None:
    with case.serve() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base, CALL_BUDGET)):
        elapsed = timed(CALLS[call], case.error, "timed out at its 0.5 s deadline")
    assert_took(elapsed, case, CALL_BUDGET)


def test_connect_attempts_to_every_address_of_a_host_share_one_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolve = socket.getaddrinfo

    with stalled_listener() as (host, port):

        def twice(name: Any, *args: Any, **kwargs: Any) -> Any:
            # A host with two addresses, both black holes.
            if name == "twice.localhost":
                return resolve(host, *args, **kwargs) * 2
            return resolve(name, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", twice)
        with override_settings(FRAMEIO_OAUTH=oauth_settings(f"http://twice.localhost:{port}")):
            elapsed = timed(CALLS["refresh"], ProviderUnavailable, TIMED_OUT)
    assert elapsed <= BUDGET + SLACK


def test_a_call_through_a_proxy_keeps_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The proxy drips its answer to CONNECT: the tunnel is watched like any connection.
    with served(drip_headers)() as proxy:
        for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        provider.reread_environment()
        try:
            with override_settings(FRAMEIO_OAUTH=oauth_settings("https://ims.example")):
                elapsed = timed(CALLS["refresh"], ProviderUnavailable, TIMED_OUT)
        finally:
            provider.reread_environment()
    assert BUDGET <= elapsed <= BUDGET + SLACK


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ssl.SSLContext]:
    """A server context whose self-signed certificate the provider calls trust."""
    context, certificate = self_signed_tls(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))
    provider.reread_environment()
    yield context
    provider.reread_environment()


def over_tls(context: ssl.SSLContext, then: Handler) -> Handler:
    def handle(conn: socket.socket, stop: threading.Event) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as secured:
                then(secured, stop)
        except OSError:
            return  # a client that gave up mid-handshake

    return handle


def test_an_answer_over_tls_is_read_within_the_deadline(tls: ssl.SSLContext) -> None:
    def good(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(answer(GOOD))

    with served(over_tls(tls, good), "https")() as base:
        with override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
            assert provider.refresh_grant("RT").access_token == "AT"


def test_a_tls_server_dripping_its_headers_is_cut_at_the_deadline(tls: ssl.SSLContext) -> None:
    with served(over_tls(tls, drip_headers), "https")() as base:
        with override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
            elapsed = timed(CALLS["refresh"], ProviderUnavailable, TIMED_OUT)
    assert BUDGET <= elapsed <= BUDGET + SLACK


# --- kept-alive connections and fork ----------------------------------------------------------


def counting(handle: Handler) -> tuple[Handler, list[int]]:
    """``handle`` that also counts the connections it served."""
    connections: list[int] = []

    def count(conn: socket.socket, stop: threading.Event) -> None:
        connections.append(len(connections))
        handle(conn, stop)

    return count, connections


def keep_answering(conn: socket.socket, stop: threading.Event) -> None:
    conn.settimeout(TICK)
    while not stop.is_set():
        try:
            read_request(conn)
        except TimeoutError:
            continue
        except OSError:
            return
        conn.sendall(answer(GOOD))


def test_a_finished_call_leaves_its_kept_alive_connection_uncut() -> None:
    handle, connections = counting(keep_answering)
    with served(handle)() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base, 0.4)):
        provider.refresh_grant("RT")
        time.sleep(0.6)  # past the first call's deadline
        provider.refresh_grant("RT")
    assert len(connections) == 1


def test_a_connection_cut_at_the_deadline_is_not_used_again() -> None:
    def silent_then_answering(conn: socket.socket, stop: threading.Event) -> None:
        if len(connections) == 1:
            say_nothing(conn, stop)
        else:
            keep_answering(conn, stop)

    handle, connections = counting(silent_then_answering)
    with served(handle)() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base, 0.5)):
        with pytest.raises(ProviderUnavailable, match="timed out"):
            provider.refresh_grant("RT")
        assert provider.refresh_grant("RT").access_token == "AT"
    assert len(connections) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
# Python 3.12+ warns of fork() in a process with threads, which is what Celery's prefork pool
# does after the watchdog has started in the parent: the very case under test.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_cuts_its_calls_at_the_deadline_too() -> None:
    # Celery's prefork workers fork after the parent has imported (and maybe used) the app:
    # the parent's watchdog thread does not exist in the child.
    def good(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(answer(GOOD, headers="Connection: close\r\n"))

    with served(good)() as good_base, served(drip_headers)() as drip_base:
        with override_settings(FRAMEIO_OAUTH=oauth_settings(good_base)):
            provider.refresh_grant("RT")  # the parent's watchdog is running
        readable, writable = os.pipe()
        with override_settings(FRAMEIO_OAUTH=oauth_settings(drip_base)):
            child = os.fork()
            if child == 0:
                outcome = b"no error"
                try:
                    started = time.monotonic()
                    provider.refresh_grant("RT")
                except ProviderUnavailable:
                    outcome = str(time.monotonic() - started).encode()
                finally:
                    os.write(writable, outcome)
                    os._exit(0)
        os.close(writable)
        ready, _, _ = select.select([readable], [], [], MISBEHAVE_FOR + 10)
        result = os.read(readable, 100) if ready else b"nothing"
        os.close(readable)
        os.waitpid(child, 0)
    assert result.replace(b".", b"", 1).isdigit(), f"the child's call ended with {result!r}"
    assert float(result) <= BUDGET + SLACK


# --- the body's encoding ----------------------------------------------------------------------


def test_provider_calls_ask_for_an_unencoded_answer() -> None:
    heads: list[bytes] = []

    def record(conn: socket.socket, stop: threading.Event) -> None:
        heads.append(read_request(conn).lower())
        conn.sendall(answer(GOOD))

    with served(record)() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
        provider.refresh_grant("RT")
    assert b"\r\naccept-encoding: identity" in heads[0]


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
def test_an_answer_compressed_all_the_same_is_decoded(
    encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    def compressed(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(answer(compress(GOOD), headers=f"Content-Encoding: {encoding}\r\n"))

    with served(compressed)() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
        assert provider.refresh_grant("RT").access_token == "AT"


def test_an_answer_in_an_unknown_encoding_is_a_provider_error() -> None:
    def brotli(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(answer(b"\x8b\x02\x80{}\x03", headers="Content-Encoding: br\r\n"))

    with served(brotli)() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
        with pytest.raises(ProviderError, match="unknown encoding 'br'"):
            provider.refresh_grant("RT")


def test_a_gzip_bomb_is_refused_without_being_inflated() -> None:
    with served(gzip_bomb)() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
        tracemalloc.start()
        try:
            with pytest.raises(ProviderError, match=OVER_CAP):
                provider.refresh_grant("RT")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # The cap's 1 MiB and read buffers, not the 64 MiB the bomb inflates to.
    assert peak < 4 * 1024 * 1024


def test_a_refresh_asked_again_without_scope_shares_the_first_calls_deadline() -> None:
    # The first answer (invalid_scope) takes most of the budget; the retry gets what is left.
    # A longer budget than the others', so that a stall on a busy machine cannot pass for a
    # second deadline.
    budget = 2.0
    refusal = json.dumps({"error": "invalid_scope"}).encode()

    def slow_refusal_then_silence(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        time.sleep(1.2)
        conn.sendall(answer(refusal).replace(b"200 OK", b"400 Bad Request"))
        until_hung_up(conn, stop)

    with served(slow_refusal_then_silence)() as base:
        with override_settings(FRAMEIO_OAUTH=oauth_settings(base, budget)):
            elapsed = timed(
                lambda: provider.refresh_grant("RT", scope="openid offline"),
                ProviderUnavailable,
                "timed out",
            )
    # Two deadlines of their own would have taken 3.2 s.
    assert budget <= elapsed <= budget + SLACK


# --- answers that end with their connection, and answers read late ---------------------------

HEAD_AT = 0.3


def head_then_stall(head: bytes) -> Handler:
    """Send ``head`` (and a first bit of body) at once, then nothing until the client leaves."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        time.sleep(HEAD_AT)
        conn.sendall(head)
        until_hung_up(conn, stop)

    return handle


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 500\r\n\r\n{",
        b"HTTP/1.0 200 OK\r\nContent-Length: 500\r\n\r\n{",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
    ],
    ids=["connection-close", "http-1.0", "unframed", "chunked-and-close"],
)
def test_an_answer_that_ends_with_its_connection_stays_under_the_deadline(head: bytes) -> None:
    # http.client closes such a connection once the head is in and hands its socket on: the
    # deadline went with it, and the body could stall for as long as the server liked.
    with served(head_then_stall(head))() as base:
        with override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
            elapsed = timed(lambda: provider.refresh_grant("RT"), ProviderUnavailable, "timed out")
    assert BUDGET <= elapsed <= BUDGET + SLACK


def test_an_answer_in_the_socket_before_the_deadline_is_kept_if_read_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As when the worker is descheduled (CPU quota, a busy GIL) between the answer's arrival
    # and its read: the clock jumps past the deadline with the answer already buffered. It may
    # carry the only copy of a rotated refresh token.
    arrived = threading.Event()

    def answer_at_once(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(answer(GOOD))
        arrived.set()
        until_hung_up(conn, stop)

    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + (5.0 if arrived.is_set() else 0.0))
    with served(answer_at_once)() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
        assert provider.refresh_grant("RT").refresh_token == "RT2"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_never_uses_a_connection_its_parent_kept_alive() -> None:
    # Parent and child would share one socket and read each other's answers: one user's
    # tokens stored on another's row.
    handle, connections = counting(keep_answering)

    def each_in_a_thread(conn: socket.socket, stop: threading.Event) -> None:
        # The parent's connection stays open: the child's must still be served.
        own = conn.dup()
        threading.Thread(target=lambda: (handle(own, stop), own.close()), daemon=True).start()

    with served(each_in_a_thread)() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
        provider.refresh_grant("RT")  # leaves a kept-alive connection in the parent's pool
        child = os.fork()
        if child == 0:
            code = 1
            try:
                provider.refresh_grant("RT")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        provider.refresh_grant("RT")  # the parent's connection still works
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(connections) == 2


# The SystemExit the test injects into the watchdog thread is reported as it ends: expected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_call_in_flight_keeps_its_deadline_when_the_watchdog_thread_dies() -> None:
    import ctypes

    def kill_the_watchdog() -> None:
        time.sleep(0.3)
        for thread in threading.enumerate():
            if thread.name == "frameio-oauth-deadlines" and thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit)
                )

    with served(drip_headers)() as base, override_settings(FRAMEIO_OAUTH=oauth_settings(base)):
        threading.Thread(target=kill_the_watchdog).start()
        elapsed = timed(lambda: provider.refresh_grant("RT"), ProviderUnavailable, "timed out")
    assert elapsed <= BUDGET + SLACK
