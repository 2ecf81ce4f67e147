"""A minimal OAuth token endpoint for the benchmarks, on 127.0.0.1 only.

Run by ``_setup.local_provider()`` as its own process (so its CPU never shows up in the
benchmark's ``time.process_time()``). Prints ``port <n>`` once it listens, then answers every
``POST`` with a fresh token pair (rotating refresh token) ``--delay`` seconds after the request
arrived: the delay is the provider's whole answer time, its own handling included, as "a
provider that answers in 50 ms" means. HTTP/1.1 with keep-alive and TCP_NODELAY, like a real
provider behind a load balancer.

asyncio rather than a thread per connection: with 8 concurrent clients on 2 cores, a threaded
``http.server`` added milliseconds of its own scheduling to every answer. The loop waits with
``select()``, not the default epoll: epoll_wait takes whole milliseconds, so asyncio rounds
every sleep up to the next millisecond and the provider answered 50.6 ms after arrival on
average instead of 50 (measured with a raw socket client; throughput.py prints that figure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import selectors
import socket
import sys
from collections.abc import Awaitable, Callable


def _answer() -> bytes:
    body = json.dumps(
        {
            "access_token": secrets.token_urlsafe(32),
            "refresh_token": secrets.token_urlsafe(32),
            "token_type": "bearer",
            "expires_in": 3600,
            "scope": "account.read offline",
        }
    ).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived = loop.time()
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            response = _answer()
            await asyncio.sleep(max(delay - (loop.time() - arrived), 0))
            writer.write(response)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _listen(handle: Handler, port: int, backlog: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=backlog)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    sys.stdout.close()
    async with server:
        await server.serve_forever()


def serve(handle: Handler, port: int, *, backlog: int = 128) -> None:
    """Serve ``handle`` on 127.0.0.1 until interrupted, printing ``port <n>`` once listening
    (the line ``_setup.local_provider()`` and the soak wait for)."""
    # A few dozen sockets at most, so select()'s cost is nothing; its timeout has microseconds.
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=lambda: loop) as runner,
    ):
        runner.run(_listen(handle, port, backlog))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve(lambda r, w: _serve(r, w, args.delay), args.port)


if __name__ == "__main__":
    main()
