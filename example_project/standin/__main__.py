"""Run the stand-in: ``python -m example_project.standin [--host 127.0.0.1] [--port 8001]``.

Migrates its own SQLite file, seeds users and clients, then serves with a threaded WSGI
server. Prints exactly one line to stdout, ``standin ready on http://HOST:PORT``, once the
socket is listening, so a test harness can wait for it and read the real port (``--port 0``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m example_project.standin",
        description="Local Frame.io OAuth 2.0 stand-in.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8001,
        help="port to bind; 0 picks a free one (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Assigned, not setdefault: a parent such as pytest-django exports its own settings
    # module, and the stand-in must never boot as the client site.
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.standin.settings"

    import django

    django.setup()

    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    from .seed import seed

    call_command("migrate", interactive=False, verbosity=0)
    seed()

    host = args.host.strip("[]")
    ipv6 = ":" in host
    # Django's threaded server closes each request thread's DB connections when the request
    # ends, which SQLite needs; its daemon threads also keep shutdown from hanging on
    # idle keep-alive connections.
    server = ThreadedWSGIServer((host, args.port), WSGIRequestHandler, ipv6=ipv6)
    server.set_app(get_wsgi_application())

    def request_shutdown(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, and that runs on this (the main)
        # thread: call it from a helper thread or the handler would wait on itself.
        threading.Thread(target=server.shutdown, name="standin-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, request_shutdown)
    signal.signal(signal.SIGINT, request_shutdown)

    port = server.server_address[1]
    url_host = f"[{host}]" if ipv6 else host
    # The socket is bound and listening since the constructor returned; connections made
    # before serve_forever() starts simply wait in the backlog.
    print(f"standin ready on http://{url_host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
