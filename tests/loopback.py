"""A throwaway HTTP server on loopback, for tests that need a real socket misbehaving."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Handler = Callable[[socket.socket, threading.Event], None]


@contextmanager
def loopback_server(handle: Handler) -> Iterator[str]:
    """Serve each connection with ``handle(conn, stop)`` on a thread; yields the base URL.
    ``stop`` is set when the block ends, for handlers that would otherwise go on."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                handle(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
