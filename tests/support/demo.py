"""The demo (``python -m example_project.run``, what ``make run`` runs) as a subprocess, for
the tests that start it: its environment on free ports, its output read line by line, and the
processes it left."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BANNER = "The demo is ready: open "
# Long enough for a loaded CI machine to migrate two databases and boot three services.
START_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def demo_env(var_dir: Path, **env: str) -> dict[str, str]:
    own = ("DJANGO_", "FRAMEIO_", "EXAMPLE_", "CELERY_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    environment.update(
        {
            "EXAMPLE_VAR_DIR": str(var_dir),
            "EXAMPLE_PORT": str(free_port()),
            "FRAMEIO_STANDIN_PORT": str(free_port()),
            **env,
        }
    )
    return environment


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "example_project.run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
    )


def processes_of(var_dir: Path) -> list[int]:
    """Live processes (zombies aside) whose environment names this var dir: the demo's own,
    its services and every helper they started."""
    marker = f"EXAMPLE_VAR_DIR={var_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if state != "Z" and marker in environ:
            found.append(int(entry.name))
    return found


class Demo:
    """example_project.run as a subprocess, its output (stdout and stderr in the order they
    were written) read line by line as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "example_project.run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._incoming: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._incoming.put(line.rstrip("\n"))
        self._incoming.put(None)

    def wait_for_line(self, prefix: str, seconds: float = START_SECONDS) -> str | None:
        """The first line starting with prefix, or None if the output ended without one."""
        deadline = time.monotonic() + seconds
        while True:
            line = self._incoming.get(timeout=max(deadline - time.monotonic(), 0.1))
            if line is None:
                return None
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def finish(self) -> tuple[int, list[str]]:
        """Exit status and every line, once the demo and its services have exited."""
        status = self.process.wait(timeout=60)
        self._reader.join(timeout=30)
        while True:
            try:
                line = self._incoming.get_nowait()
            except queue.Empty:
                return status, self.lines
            if line is not None:
                self.lines.append(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
