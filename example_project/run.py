"""``python -m example_project.run`` (what ``make run`` runs): the whole demo in one command.

Checks that its ports are free, migrates the site's SQLite database and creates the site's own
admin (admin / admin) while DEBUG is on, then starts three services: the local Frame.io
stand-in (not when FRAMEIO_CLIENT_ID points the site at the real Frame.io), a Celery worker
with beat, and the site. The banner comes once every service answers. If one cannot start or
stops, the others are stopped and the exit status is 1, with one line on stderr saying which
and why. Ctrl-C (or SIGTERM) stops them all, exit status 0. Variables: docs/example.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from frameio_oauth.standin.config import ConfigurationError, mode_from_environ

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SITE_PORT = 8000
STANDIN_PORT = 8001
# Short enough that a background refresh shows on the home page within minutes (docs/example.md).
DEMO_ACCESS_TOKEN_SECONDS = 180
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
PREFIX = "demo:"
STANDIN_COMMAND = [sys.executable, "-m", "frameio_oauth.standin"]
WORKER_COMMAND = [sys.executable, "-m", "celery", "-A", "example_project", "worker", "--beat"]
WORKER_COMMAND += ["--loglevel", "INFO", "--concurrency", "2"]


class DemoFailed(Exception):
    """Why the demo cannot go on, in the words of its one line on stderr."""


@dataclass
class Service:
    name: str  # as the messages say it: "the site"
    command: list[str]
    answers: Callable[[], bool]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        # A session of its own: Ctrl-C in the terminal reaches only this supervisor, which
        # stops the services itself, and a service's helpers (Celery's pool and beat) share
        # its process group, so none outlives the demo.
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=env, start_new_session=True)

    def exit_status(self) -> int | None:
        return None if self.process is None else self.process.poll()


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    services: list[Service] = []
    failure: str | None = None
    try:
        with _scratch_folder() as scratch:
            env, services, banner = plan(scratch)
            prepare_site(env)
            for service in services:
                service.start(env)
            wait_until_answering(services, START_TIMEOUT)
            print(banner, flush=True)
            watch(services)
    except KeyboardInterrupt:
        pass
    except DemoFailed as exc:
        failure = str(exc)
    finally:
        stop(services)
    if failure is not None:
        # After the others have stopped, so it is the last line their shutdown logs leave.
        print(f"{PREFIX} {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


def plan(scratch: Path) -> tuple[dict[str, str], list[Service], str]:
    """The services' environment, the services, and the banner; checks the ports first."""
    site_port = port_setting("EXAMPLE_PORT", SITE_PORT)
    use_standin = not os.environ.get("FRAMEIO_CLIENT_ID")
    standin_port = port_setting("FRAMEIO_STANDIN_PORT", STANDIN_PORT) if use_standin else None
    if site_port == standin_port:
        raise DemoFailed(f"EXAMPLE_PORT and FRAMEIO_STANDIN_PORT are both {site_port}")
    ensure_free(site_port, "the site", "EXAMPLE_PORT")
    if standin_port is not None:
        ensure_free(standin_port, "the Frame.io stand-in", "FRAMEIO_STANDIN_PORT")
    try:
        mode = mode_from_environ(os.environ)
    except ConfigurationError as exc:
        raise DemoFailed(str(exc)) from None

    site_url = f"http://{HOST}:{site_port}"
    var_dir = Path(os.environ.get("EXAMPLE_VAR_DIR") or ROOT / "var")
    ready_file = Path(os.environ.get("EXAMPLE_CELERY_READY_FILE") or scratch / "celery-ready")
    ready_file.unlink(missing_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get(
            "DJANGO_SETTINGS_MODULE", "example_project.settings"
        ),
        "EXAMPLE_CELERY_READY_FILE": str(ready_file),
    }
    services = []
    lines = [f"The demo is ready: open {site_url}/"]
    if standin_port is not None:
        standin_url = f"http://{HOST}:{standin_port}"
        env.update(
            FRAMEIO_STANDIN_URL=standin_url,
            FRAMEIO_STANDIN_DB=os.environ.get("FRAMEIO_STANDIN_DB")
            or str(var_dir / "standin.sqlite3"),
            FRAMEIO_STANDIN_REDIRECT_URIS=os.environ.get("FRAMEIO_STANDIN_REDIRECT_URIS")
            or f"{site_url}/frameio/callback/ http://localhost:{site_port}/frameio/callback/",
            FRAMEIO_STANDIN_ACCESS_TOKEN_SECONDS=os.environ.get(
                "FRAMEIO_STANDIN_ACCESS_TOKEN_SECONDS"
            )
            or str(DEMO_ACCESS_TOKEN_SECONDS),
        )
        services.append(
            Service(
                "the Frame.io stand-in",
                [*STANDIN_COMMAND, "--host", HOST, "--port", str(standin_port)],
                lambda: http_answers(f"{standin_url}/"),
            )
        )
        lines += [
            f"  Frame.io (the stand-in at {standin_url}, playing {mode.shape.label}):"
            " sign in there as demo / demo",
            f"  access tokens live {env['FRAMEIO_STANDIN_ACCESS_TOKEN_SECONDS']} s,"
            " so the home page shows a background refresh within minutes",
        ]
    if debug_on():
        lines.append(f"  this site's own login ({site_url}/admin/): admin / admin")
    services += [
        Service(
            "the Celery worker",
            WORKER_COMMAND,
            ready_file.exists,
        ),
        Service(
            "the site",
            [sys.executable, "manage.py", "runserver", "--noreload", f"{HOST}:{site_port}"],
            lambda: http_answers(f"{site_url}/"),
        ),
    ]
    lines.append("  Ctrl-C stops everything.")
    return env, services, "\n" + "\n".join(lines) + "\n"


def port_setting(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise DemoFailed(f"{name} must be a port number from 1 to 65535, not {value!r}")
    return int(value)


def ensure_free(port: int, service: str, variable: str) -> None:
    with socket.socket() as probe:
        # As the servers bind: a port a previous run left in TIME_WAIT is free to them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            raise DemoFailed(
                f"port {port} is already in use, so {service} cannot start; "
                f"stop what uses it or set {variable} to another port"
            ) from None


# Straight to loopback, whatever http_proxy says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_answers(url: str) -> bool:
    try:
        with _opener.open(url, timeout=2):
            return True
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise DemoFailed(f"{url} answers HTTP {error.code}") from None
        return True
    except OSError:
        return False


def debug_on() -> bool:
    return os.environ.get("DJANGO_DEBUG", "1").lower() in ("1", "true", "yes", "on")


def prepare_site(env: dict[str, str]) -> None:
    manage(env, "migrate", "--verbosity", "0")
    if debug_on():
        code = (
            "from django.contrib.auth import get_user_model as g; U = g(); "
            "U.objects.filter(username='admin').exists() or "
            "U.objects.create_superuser('admin', 'admin@example.com', 'admin')"
        )
        manage(env, "shell", "--verbosity", "0", "-c", code)


def manage(env: dict[str, str], *args: str) -> None:
    status = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env).returncode
    if status != 0:
        raise DemoFailed(f"manage.py {args[0]} {describe(status)}")


def wait_until_answering(services: list[Service], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(services)
    while True:
        for service in services:
            status = service.exit_status()
            if status is not None:
                raise DemoFailed(
                    f"{service.name} {describe(status)} before it answered; stopped the others"
                )
        waiting = [service for service in waiting if not service.answers()]
        if not waiting:
            return
        if time.monotonic() > deadline:
            names = " and ".join(service.name for service in waiting)
            raise DemoFailed(f"{names} did not answer within {timeout:g} s; stopped the others")
        time.sleep(0.2)


def watch(services: list[Service]) -> None:
    """Returns only by raising: when a service stops, the demo stops."""
    while True:
        for service in services:
            status = service.exit_status()
            if status is not None:
                raise DemoFailed(f"{service.name} {describe(status)}; stopped the others")
        time.sleep(0.5)


def stop(services: list[Service]) -> None:
    # A second Ctrl-C must not cut the clean-up short and leave services running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started = [service.process for service in services if service.process is not None]
    for process in started:
        if process.poll() is None:
            # Each service shuts down cleanly on SIGTERM; one still booting, before its
            # handler is in place, just ends, where SIGINT would print a traceback.
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in started:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    for process in started:
        # Whatever is left in its group: a hung service, or the helpers of one that was killed.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def describe(status: int) -> str:
    if status < 0:
        return f"was killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


@contextmanager
def _scratch_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="frameio-demo-") as folder:
        yield Path(folder)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
