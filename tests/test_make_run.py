"""``make run`` (``python -m example_project.run``) tells the truth: its banner comes once the
site, the stand-in and the Celery worker answer; a service that fails or stops takes the others
down and the demo exits 1 with one line saying which; a taken port is that one line."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

# Which processes are left is read from /proc; the runner's process groups are POSIX anyway.
pytestmark = pytest.mark.skipif(
    not Path("/proc/self/environ").exists(), reason="reads processes from Linux's /proc"
)

ROOT = Path(__file__).resolve().parent.parent
BANNER = "The demo is ready: open "
# Long enough for a loaded CI machine to migrate two databases and boot three services.
START_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def held_port() -> Iterator[int]:
    """A port something else listens on for the duration."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


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

    def wait_for_line(self, prefix: str) -> str | None:
        """The first line starting with prefix, or None if the output ended without one."""
        deadline = time.monotonic() + START_SECONDS
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


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the tests that start everything: the databases are migrated once."""
    return tmp_path_factory.mktemp("demo-var")


@pytest.fixture
def demo_processes(var_dir: Path) -> Iterator[list[Demo]]:
    """Started demos; any still running at the end of a test is killed with its services."""
    demos: list[Demo] = []
    yield demos
    for demo in demos:
        demo.kill()
    for pid in processes_of(var_dir):
        os.kill(pid, signal.SIGKILL)


def test_a_taken_site_port_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with held_port() as port:
        result = run_demo(demo_env(tmp_path, EXAMPLE_PORT=str(port)))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"demo: port {port} is already in use, so the site cannot start; "
        "stop what uses it or set EXAMPLE_PORT to another port"
    ]
    assert not (tmp_path / "example.sqlite3").exists()  # not even migrated
    assert processes_of(tmp_path) == []


def test_a_taken_standin_port_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with held_port() as port:
        result = run_demo(demo_env(tmp_path, FRAMEIO_STANDIN_PORT=str(port)))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"demo: port {port} is already in use, so the Frame.io stand-in cannot start; "
        "stop what uses it or set FRAMEIO_STANDIN_PORT to another port"
    ]
    assert not (tmp_path / "example.sqlite3").exists()
    assert processes_of(tmp_path) == []


def test_a_port_setting_that_is_not_a_port_is_one_line(tmp_path: Path) -> None:
    result = run_demo(demo_env(tmp_path, EXAMPLE_PORT="eighty"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "demo: EXAMPLE_PORT must be a port number from 1 to 65535, not 'eighty'"
    ]


def test_the_banner_comes_once_the_site_the_standin_and_the_worker_answer_and_ctrl_c_stops_all(
    var_dir: Path, tmp_path: Path, demo_processes: list[Demo]
) -> None:
    ready_file = tmp_path / "celery-ready"
    env = demo_env(var_dir, EXAMPLE_CELERY_READY_FILE=str(ready_file))
    demo = Demo(env)
    demo_processes.append(demo)

    banner = demo.wait_for_line(BANNER)

    assert banner == f"{BANNER}http://127.0.0.1:{env['EXAMPLE_PORT']}/", demo.lines
    site = requests.get(f"http://127.0.0.1:{env['EXAMPLE_PORT']}/", timeout=5)
    standin = requests.get(f"http://127.0.0.1:{env['FRAMEIO_STANDIN_PORT']}/", timeout=5)
    assert (site.status_code, standin.status_code) == (200, 200)
    assert ready_file.exists()  # written by the worker once it consumes from its broker
    assert len(processes_of(var_dir)) >= 4  # the demo and its three services at least
    demo.process.send_signal(signal.SIGINT)  # Ctrl-C
    status, lines = demo.finish()
    assert status == 0
    assert not [line for line in lines if line.startswith("demo:")]
    assert processes_of(var_dir) == []


def test_a_service_that_stops_stops_the_others_and_the_demo_exits_1_with_one_line(
    var_dir: Path, tmp_path: Path, demo_processes: list[Demo]
) -> None:
    ready_file = tmp_path / "celery-ready"
    demo = Demo(demo_env(var_dir, EXAMPLE_CELERY_READY_FILE=str(ready_file)))
    demo_processes.append(demo)
    assert demo.wait_for_line(BANNER), demo.lines

    os.kill(int(ready_file.read_text()), signal.SIGKILL)  # the worker's main process

    status, lines = demo.finish()
    assert status == 1
    assert [line for line in lines if line.startswith("demo:")] == [
        "demo: the Celery worker was killed by SIGKILL; stopped the others"
    ]
    assert lines[-1].startswith("demo:")
    assert not [line for line in lines if "Traceback" in line]
    assert processes_of(var_dir) == []


def test_a_service_that_fails_to_start_stops_the_others_before_any_banner(
    var_dir: Path, tmp_path: Path, demo_processes: list[Demo]
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    demo = Demo(demo_env(var_dir, FRAMEIO_STANDIN_DB=str(not_a_folder / "standin.sqlite3")))
    demo_processes.append(demo)

    assert demo.wait_for_line(BANNER) is None
    status, lines = demo.finish()

    assert status == 1
    assert [line for line in lines if line.startswith("demo:")] == [
        "demo: the Frame.io stand-in exited with status 1 before it answered; stopped the others"
    ]
    assert lines[-1].startswith("demo:")
    assert not [line for line in lines if "Traceback" in line]
    assert processes_of(var_dir) == []
