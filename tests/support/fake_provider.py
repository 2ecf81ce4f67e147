"""A loopback token endpoint that rotates refresh tokens and treats reuse like Frame.io may:
an old refresh token presented again is refused with invalid_grant and counted. It can stall
requests on demand, which django-oauth-toolkit cannot. For bulk and failure tests; the
end-to-end tests use the real stand-in."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class ProviderState:
    live: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)
    requests: int = 0
    reuses: int = 0
    delay: float = 0.0
    # The next request is held until ``release`` is set, then dropped unanswered and
    # unprocessed, like a request lost with the worker that sent it.
    stall_next: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, refresh_token: str | None = None) -> str:
        token = refresh_token or f"rt-{secrets.token_urlsafe(12)}"
        with self.lock:
            self.live.add(token)
        return token


class _Handler(BaseHTTPRequestHandler):
    state: ProviderState

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        state = self.state
        with state.lock:
            stall, state.stall_next = state.stall_next, False
        if stall:
            state.arrived.set()
            state.release.wait(60)
            self.close_connection = True
            return
        if state.delay:
            time.sleep(state.delay)
        presented = form.get("refresh_token", "")
        with state.lock:
            state.requests += 1
            if presented in state.used or presented not in state.live:
                state.reuses += presented in state.used
                return self._answer(400, {"error": "invalid_grant"})
            state.live.discard(presented)
            state.used.add(presented)
            new = f"rt-{secrets.token_urlsafe(12)}"
            state.live.add(new)
        self._answer(
            200,
            {
                "access_token": f"at-{secrets.token_urlsafe(12)}",
                "refresh_token": new,
                "expires_in": 3600,
                "token_type": "bearer",
            },
        )

    def _answer(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    # Racing callers may connect all at once: more than the default backlog of 5.
    request_queue_size = 64
    daemon_threads = True


@contextmanager
def rotating_provider() -> Iterator[tuple[str, ProviderState]]:
    """Yields the token URL and the provider's state; stops the server afterwards."""
    state = ProviderState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/token", state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
