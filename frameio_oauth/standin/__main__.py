"""``python -m frameio_oauth.standin [--host H] [--port P] [--legacy] [--db PATH]``.

Migrates its own SQLite file, seeds users and clients, then serves with a threaded WSGI
server. Prints exactly one line to stdout, ``standin ready on http://HOST:PORT``, once the
socket is listening, so a harness can wait for it and read the real port (``--port 0``).
A problem it can name (a taken port, a bad variable, a missing extra) is one line on stderr,
``standin: ...``, and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .config import ConfigurationError, StandinConfig

PROG = "python -m frameio_oauth.standin"


def parse_args(argv: list[str] | None, defaults: StandinConfig) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local stand-in for Frame.io's OAuth 2.0 server (Adobe IMS by default).",
    )
    parser.add_argument(
        "--host",
        default=defaults.host,
        help="address to bind (FRAMEIO_STANDIN_HOST; default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=defaults.port,
        help="port to bind, 0 for a free one (FRAMEIO_STANDIN_PORT; default: %(default)s)",
    )
    parser.add_argument(
        "--legacy",
        action="store_true",
        help="play legacy Frame.io (applications.frame.io) instead (FRAMEIO_STANDIN_LEGACY=1)",
    )
    parser.add_argument(
        "--db", help=f"its SQLite file (FRAMEIO_STANDIN_DB; default: {defaults.db_path})"
    )
    return parser.parse_args(argv)


def fail(message: str) -> int:
    print(f"standin: {message}", file=sys.stderr, flush=True)
    return 1


def main(argv: list[str] | None = None) -> int:
    try:
        defaults = StandinConfig.from_environ(os.environ)
    except ConfigurationError as exc:
        return fail(str(exc))
    args = parse_args(argv, defaults)
    # The options become the environment that config.current() reads once Django starts.
    if args.legacy:
        os.environ["FRAMEIO_STANDIN_LEGACY"] = "1"
    if args.db:
        os.environ["FRAMEIO_STANDIN_DB"] = args.db
    # Assigned, not setdefault: a parent such as pytest-django exports its own settings
    # module, and the stand-in must never boot as the client site.
    os.environ["DJANGO_SETTINGS_MODULE"] = "frameio_oauth.standin.settings"
    try:
        import oauth2_provider  # noqa: F401 - only whether the extra is installed
    except ImportError:
        return fail('it needs django-oauth-toolkit: pip install "frameio-oauth[standin]"')
    db_path = Path(args.db) if args.db else defaults.db_path
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail(f"cannot create the folder of its database, {db_path.parent}: {exc.strerror}")
    return serve(args.host, args.port)


def serve(host: str, port: int) -> int:
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    host = host.strip("[]")
    ipv6 = ":" in host
    try:
        # Bound before the database is migrated, so a taken port is reported at once.
        # Django's threaded server closes each request thread's DB connections when the
        # request ends, which SQLite needs; its daemon threads also keep shutdown from
        # hanging on idle keep-alive connections.
        server = ThreadedWSGIServer((host, port), WSGIRequestHandler, ipv6=ipv6)
    except OSError as exc:
        return fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")

    import django

    django.setup()

    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    from .seed import seed

    call_command("migrate", interactive=False, verbosity=0)
    seed()
    server.set_app(get_wsgi_application())

    def request_shutdown(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, and that runs on this (the main)
        # thread: call it from a helper thread or the handler would wait on itself.
        threading.Thread(target=server.shutdown, name="standin-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, request_shutdown)
    signal.signal(signal.SIGINT, request_shutdown)

    bound_port = server.server_address[1]
    url_host = f"[{host}]" if ipv6 else host
    # The socket is bound and listening since the constructor returned; connections made
    # before serve_forever() starts simply wait in the backlog.
    print(f"standin ready on http://{url_host}:{bound_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
