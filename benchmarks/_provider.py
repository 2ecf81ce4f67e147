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
from dataclasses import dataclass
from http import HTTPStatus


@dataclass(frozen=True)
class Request:
    method: bytes
    path: bytes
    body: bytes
    arrived: float  # the loop's time once its head was read

    async def answer_after(self, delay: float, response: bytes) -> bytes:
        """``response``, ``delay`` seconds after the request arrived."""
        await asyncio.sleep(max(delay - (asyncio.get_running_loop().time() - self.arrived), 0))
        return response


Answer = Callable[[Request], Awaitable[bytes]]


def json_response(status: int, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
        f"Cache-Control: no-store\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _keep_alive(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: Answer,
    on_connection: Callable[[], None],
) -> None:
    """Answer the requests of one kept-alive connection until the client hangs up."""
    loop = asyncio.get_running_loop()
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    on_connection()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived = loop.time()
            lines = head.split(b"\r\n")
            method, path = lines[0].split(b" ")[:2]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            writer.write(await answer(Request(method, path, body, arrived)))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _listen(
    answer: Answer, port: int, backlog: int, on_connection: Callable[[], None]
) -> None:
    server = await asyncio.start_server(
        lambda r, w: _keep_alive(r, w, answer, on_connection), "127.0.0.1", port, backlog=backlog
    )
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    sys.stdout.close()
    async with server:
        await server.serve_forever()


def serve(
    answer: Answer,
    port: int,
    *,
    backlog: int = 128,
    on_connection: Callable[[], None] = lambda: None,
) -> None:
    """Serve ``answer`` over HTTP/1.1 keep-alive on 127.0.0.1 until interrupted, printing
    ``port <n>`` once listening (the line ``_setup.local_provider()`` and the soak wait for)."""
    # A few dozen sockets at most, so select()'s cost is nothing; its timeout has microseconds.
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=lambda: loop) as runner,
    ):
        runner.run(_listen(answer, port, backlog, on_connection))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def answer(request: Request) -> bytes:
        return await request.answer_after(args.delay, _token_pair())

    serve(answer, args.port)


def _token_pair() -> bytes:
    return json_response(
        200,
        {
            "access_token": secrets.token_urlsafe(32),
            "refresh_token": secrets.token_urlsafe(32),
            "token_type": "bearer",
            "expires_in": 3600,
            "scope": "account.read offline",
        },
    )


if __name__ == "__main__":
    main()
