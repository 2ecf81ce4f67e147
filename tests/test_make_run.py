"""``make run`` (``python -m example_project.run``) tells the truth: its banner comes once the
site, the stand-in and the Celery worker answer; a service that fails or stops takes the others
down and the demo exits 1 with one line saying which; a taken port is that one line."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.support.demo import BANNER, Demo, demo_env, processes_of, run_demo

# Which processes are left is read from /proc; the runner's process groups are POSIX anyway.
pytestmark = pytest.mark.skipif(
    not Path("/proc/self/environ").exists(), reason="reads processes from Linux's /proc"
)


@contextmanager
def held_port() -> Iterator[int]:
    """A port something else listens on for the duration."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


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
