"""The README's quickstart, followed the way a newcomer follows it: a new virtualenv gets the
package with the README's pip line, ``django-admin startproject`` makes a new project, and
exactly the README's blocks go into it. Both client variants pass ``manage.py check`` with no
warning; with the install guide's stand-in block added, a person signs in with Frame.io V4 at
the stand-in (started from the installed package), and the README's Celery worker with beat
refreshes the token in the background.

What the test changes in the blocks, and nothing else: the checkout's path for
``/path/to/frameio-oauth``, the placeholders of the export line, free ports for the site and
the stand-in, and the test Redis database for the README's broker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from frameio_oauth.standin import Mode
from tests.support.services_probe import REDIS_URL
from tests.support.standin import Standin, form_fields

pytestmark = pytest.mark.whole_project

ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_PLACEHOLDER = "/path/to/frameio-oauth"
README_BROKER = "redis://127.0.0.1:6379/0"
STANDIN_URL = "http://127.0.0.1:8001"
EXPORTED = {"<client id>": "quickstart-client", "<client secret>": "quickstart-secret"}
# Long-running commands: started in the background, and each says when it is ready.
SERVERS = ("python manage.py runserver", "celery ", "python -m frameio_oauth.standin")
# A cold pip cache downloads every dependency; a warm one (CI installed .venv first) does not.
INSTALL_SECONDS = 900


@dataclass(frozen=True)
class Block:
    language: str
    text: str

    @property
    def heading(self) -> str:
        return self.text.splitlines()[0]


def section_blocks(document: Path, title: str) -> list[Block]:
    """The fenced code blocks of one ``## title`` section, in order."""
    text = document.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return [Block(lang, body) for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S)]


QUICKSTART = section_blocks(ROOT / "README.md", "Quickstart")
STANDIN_BLOCKS = section_blocks(ROOT / "docs" / "install.md", "Try it against the stand-in")
PUBLIC = "public client"


def edit_project(project: Path, block: Block) -> None:
    """Apply one python block as its first line says: ``# mysite/x.py, at the end`` appends
    to that file, ``# mysite/x.py, a new file`` creates it."""
    match = re.match(r"# (?:mysite/)?([\w/]+\.py), (at the end|a new file)", block.heading)
    assert match, f"a quickstart block that names no file: {block.heading!r}"
    target = project / "mysite" / match[1]
    text = block.text.replace(README_BROKER, REDIS_URL)
    if match[2] == "a new file":
        assert not target.exists(), f"{target} exists already"
        target.write_text(text)
    else:
        target.write_text(target.read_text() + "\n" + text)


def commands(block: Block) -> list[str]:
    """The block's commands, without their comments."""
    lines = [line.split("  #", 1)[0].strip() for line in block.text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@dataclass
class Shell:
    """The newcomer's terminal: each command runs in bash with the virtualenv active, and the
    working folder and exported variables carry on to the next one."""

    cwd: Path
    env: dict[str, str]
    state: Path
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(self, command: str) -> str:
        for placeholder, value in EXPORTED.items():
            command = command.replace(placeholder, value)
        command = command.replace(CHECKOUT_PLACEHOLDER, str(self.state / "checkout"))
        script = f'{command}\npwd > "{self.state}/cwd"\nenv -0 > "{self.state}/env"\n'
        result = subprocess.run(
            ["bash", "-ec", script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=INSTALL_SECONDS,
            check=False,
        )
        assert result.returncode == 0, f"{command!r} failed:\n{result.stdout}\n{result.stderr}"
        self.cwd = Path((self.state / "cwd").read_text().strip())
        pairs = (self.state / "env").read_text().split("\0")
        self.env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        return result.stdout + result.stderr

    def start(self, argv: list[str], log_name: str) -> subprocess.Popen[str]:
        log = open(self.state / f"{log_name}.log", "w")  # noqa: SIM115 - the server's lifetime
        process = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        self.servers.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.state / f"{name}.log").read_text()

    def stop(self) -> None:
        for process in self.servers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.servers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def newcomer_env(state: Path, venv: Path) -> dict[str, str]:
    """A terminal with the virtualenv active, and none of this test run's own settings."""
    ours = ("FRAMEIO_", "DJANGO_", "CELERY_", "PYTEST_", "COVERAGE_", "PYTHON")
    env = {key: value for key, value in os.environ.items() if not key.startswith(ours)}
    env.update(
        PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        VIRTUAL_ENV=str(venv),
        # The versions this checkout is tested with; pip reads it like a -c option.
        PIP_CONSTRAINT=str(ROOT / "requirements" / "constraints.txt"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        # Where the stand-in keeps its database by default.
        XDG_DATA_HOME=str(state / "data"),
    )
    return env


def copy_checkout(target: Path) -> None:
    """The files git tracks: what a checkout on another machine has."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        source = ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(source.read_bytes())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a copy of the checkout and a new virtualenv, nothing installed yet."""
    state = tmp_path_factory.mktemp("quickstart")
    copy_checkout(state / "checkout")
    subprocess.run([sys.executable, "-m", "venv", str(state / "venv")], check=True)
    return state


def shell_in(workspace: Path, folder: str) -> Shell:
    place = workspace / folder
    place.mkdir()
    return Shell(cwd=place, env=newcomer_env(workspace, workspace / "venv"), state=workspace)


def follow_quickstart(shell: Shell, *, public: bool) -> list[str]:
    """Every quickstart block in order (the public variant's only if asked); returns the
    long-running commands, not started."""
    servers = []
    for block in QUICKSTART:
        if block.language == "python":
            if (PUBLIC in block.heading) == public or PUBLIC not in block.heading:
                edit_project(shell.cwd, block)
            continue
        for command in commands(block):
            if command.startswith(SERVERS):
                servers.append(command)
            else:
                shell.run(command)
    return servers


def manage_check(shell: Shell) -> str:
    return shell.run("python manage.py check --fail-level WARNING")


def test_the_quickstart_is_short_and_made_of_the_blocks_this_test_follows() -> None:
    headings = [block.heading for block in QUICKSTART if block.language == "python"]
    assert [h.split(",")[0] for h in headings] == [
        "# mysite/settings.py",
        "# mysite/settings.py",
        "# mysite/urls.py",
        "# mysite/celery.py",
    ]
    assert sum(PUBLIC in heading for heading in headings) == 1
    shell_lines = [c for b in QUICKSTART if b.language == "sh" for c in commands(b)]
    assert any(c.startswith(f'pip install "{CHECKOUT_PLACEHOLDER}') for c in shell_lines)
    assert any(c.startswith("celery -A mysite worker --beat") for c in shell_lines)
    # Short enough to read at once: at most 40 lines of code, blank lines aside.
    assert (
        sum(len([line for line in b.text.splitlines() if line.strip()]) for b in QUICKSTART) <= 40
    )


# The first test to use the workspace pays for its install.
@pytest.mark.timeout(INSTALL_SECONDS + 120)
def test_the_quickstart_with_a_public_client_passes_every_check(workspace: Path) -> None:
    shell = shell_in(workspace, "public")
    follow_quickstart(shell, public=True)
    output = manage_check(shell)
    assert "System check identified no issues" in output, output


@pytest.mark.redis
# Its own waits (the install, the services, the refresh) add up to more than the suite's 300 s.
@pytest.mark.timeout(INSTALL_SECONDS + 600)
def test_a_new_project_built_from_the_quickstart_signs_a_v4_user_in_and_refreshes_in_the_background(
    workspace: Path,
) -> None:
    shell = shell_in(workspace, "confidential")
    servers = follow_quickstart(shell, public=False)
    assert "System check identified no issues" in manage_check(shell)
    try:
        standin = start_standin(shell)
        site = start_site(shell, servers, standin.url)
        worker = start_worker(shell, servers)

        browser, connected = sign_in(site, standin)
        assert "demo@example.com" in connected.text
        assert standin.stats() == {"authorization_code": 1, "refresh_token": 0}

        # Make the token due, as its expiry nearing would; beat's sweep runs every minute.
        shell.run(
            "python manage.py shell -c '"
            "from django.utils import timezone; from frameio_oauth.models import OAuthToken; "
            "OAuthToken.objects.update(next_refresh_at=timezone.now())'"
        )
        refreshed = wait_until(lambda: standin.stats().get("refresh_token") == 1, seconds=150)
        assert refreshed, f"no refresh within 150 s; the worker said:\n{shell.log('celery')}"
        assert worker.poll() is None
        assert "frameio_oauth.tasks.refresh_due_tokens" in shell.log("celery")
        assert "demo@example.com" in browser.get(connected.url, timeout=10).text
    finally:
        shell.stop()


def start_standin(shell: Shell) -> Standin:
    """The install guide's stand-in, from the installed package, on a free port."""
    install, run = next(commands(b) for b in STANDIN_BLOCKS if b.language == "sh")
    settings = [b for b in STANDIN_BLOCKS if b.language == "python"]
    shell.run(install)
    assert run == "python -m frameio_oauth.standin"
    process = shell.start([*run.split(), "--port", "0"], "standin")
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("standin ready on "), f"{line!r}\n{shell.log('standin')}"
    url = line.removeprefix("standin ready on ")
    for block in settings:
        edit_project(shell.cwd, Block(block.language, block.text.replace(STANDIN_URL, url)))
    return Standin(url=url, process=process, users={"demo": "demo"}, mode=Mode.IMS)


def start_site(shell: Shell, servers: list[str], standin_url: str) -> str:
    command = next(c for c in servers if c.startswith("python manage.py runserver"))
    port = free_port()
    shell.start([*command.split(), f"127.0.0.1:{port}", "--noreload"], "site")
    site = f"http://127.0.0.1:{port}"
    assert wait_until(lambda: answers(f"{site}/frameio/sign-in/"), seconds=60), shell.log("site")
    return site


def start_worker(shell: Shell, servers: list[str]) -> subprocess.Popen[str]:
    command = next(c for c in servers if c.startswith("celery "))
    worker = shell.start(command.split(), "celery")
    assert wait_until(lambda: "ready." in shell.log("celery"), seconds=60), shell.log("celery")
    return worker


def sign_in(site: str, standin: Standin) -> tuple[requests.Session, requests.Response]:
    """What a person does in the browser: the sign-in page's Frame.io button, the stand-in's
    login and consent pages, back to the site."""
    browser = requests.Session()
    page = browser.get(f"{site}/frameio/sign-in/", timeout=10)
    fields = form_fields(page.text, form_id="frameio-sign-in-form")
    start = browser.post(f"{site}/frameio/login/", data=fields, allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text[:500]
    callback = standin.consent(start.headers["Location"], "demo")
    assert urlsplit(callback).netloc == urlsplit(site).netloc
    landed = browser.get(callback, timeout=30)
    assert landed.url == f"{site}/frameio/connected/", landed.text[:500]
    return browser, landed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.RequestException:  # refused, or a server still slow at its first request
        return False


def wait_until(condition: object, *, seconds: float) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False
