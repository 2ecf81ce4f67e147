"""``python -m example_project.run``: the whole demo in one command.

Migrates the example site, creates a demo admin (admin / admin) when DEBUG is on, then runs
three processes until Ctrl-C: the local Frame.io stand-in on :8001 (skipped when
FRAMEIO_CLIENT_ID points the site at the real Frame.io), a Celery worker with the beat
schedule embedded, and the site on http://127.0.0.1:8000/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = os.environ.get("EXAMPLE_ADDR", "127.0.0.1:8000")


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def ensure_demo_admin() -> None:
    code = (
        "from django.contrib.auth import get_user_model as g; U = g(); "
        "U.objects.filter(username='admin').exists() or "
        "U.objects.create_superuser('admin', 'admin@example.com', 'admin')"
    )
    manage("shell", "-c", code)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    manage("migrate", "--verbosity", "0")
    if os.environ.get("DJANGO_DEBUG", "1").lower() in ("1", "true", "yes", "on"):
        ensure_demo_admin()
    commands: list[tuple[str, list[str]]] = []
    if not os.environ.get("FRAMEIO_CLIENT_ID"):
        commands.append(("stand-in", [sys.executable, "-m", "example_project.standin"]))
    commands += [
        (
            "celery",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "example_project",
                "worker",
                "--beat",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
            ],
        ),
        ("site", [sys.executable, "manage.py", "runserver", "--noreload", SITE]),
    ]
    processes = [(name, subprocess.Popen(cmd, cwd=ROOT)) for name, cmd in commands]
    print(
        f"\nexample running: open http://{SITE}/ (Frame.io stand-in user: demo / demo)\n",
        flush=True,
    )
    try:
        while all(process.poll() is None for _, process in processes):
            time.sleep(0.5)
        for name, process in processes:
            if process.returncode is not None:
                print(f"{name} exited with {process.returncode}; stopping the rest", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for _, process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for _, process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
