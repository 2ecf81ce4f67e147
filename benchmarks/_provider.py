"""A minimal OAuth token endpoint for the benchmarks, on 127.0.0.1 only.

Run by ``_setup.local_provider()`` as its own process (so its CPU never shows up in the
benchmark's ``time.process_time()``). Prints ``port <n>`` once it listens, then answers every
``POST`` with a fresh token pair (rotating refresh token) after ``--delay`` seconds. HTTP/1.1
with keep-alive and TCP_NODELAY, like a real provider behind a load balancer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    delay = 0.0

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.delay:
            time.sleep(self.delay)
        body = json.dumps(
            {
                "access_token": secrets.token_urlsafe(32),
                "refresh_token": secrets.token_urlsafe(32),
                "token_type": "bearer",
                "expires_in": 3600,
                "scope": "account.read offline",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    TokenHandler.delay = args.delay
    server = Server(("127.0.0.1", args.port), TokenHandler)
    print(f"port {server.server_address[1]}", flush=True)
    sys.stdout.close()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
