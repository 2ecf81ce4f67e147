from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from django.test import Client
from django.utils import timezone

from frameio_oauth.models import OAuthToken

# As a project's own package does: its Celery app (eager, from the Django settings) is the
# default one, whichever test module runs alone.
from tests.support import celery_app as _celery_app  # noqa: F401
from tests.support.services_probe import (
    IN_CI,
    PG_HOST,
    PG_PORT,
    REDIS_URL,
    browser_available,
    oidc_provider_available,
    postgres_available,
    redis_available,
)

# The fixtures a project gets from the app for its own tests (docs/testing-your-project.md).
pytest_plugins = ["frameio_oauth.testing"]

SERVICE_SKIP_PREFIX = "needs a real service:"


def pytest_report_header(config: pytest.Config) -> list[str]:
    if postgres_available():
        pg = "PostgreSQL"
    elif os.environ.get("FRAMEIO_TEST_DB") == "sqlite":
        pg = "SQLite (FRAMEIO_TEST_DB=sqlite)"
    else:
        pg = "SQLite (PostgreSQL not answering)"
    redis = REDIS_URL if redis_available() else "not answering (Celery runs eager)"
    mode = "CI: every service is required" if IN_CI else "local: missing services skip"
    return [f"frameio_oauth services: database={pg}; redis={redis}; {mode}"]


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = []
    if item.get_closest_marker("postgres") and not postgres_available():
        missing.append(f"PostgreSQL at {PG_HOST}:{PG_PORT}")
    if item.get_closest_marker("redis") and not redis_available():
        missing.append(f"Redis at {REDIS_URL}")
    if item.get_closest_marker("browser") and not browser_available():
        missing.append("chromium and chromedriver (apt-get install chromium chromium-driver)")
    if item.get_closest_marker("oidc_provider") and not oidc_provider_available():
        missing.append("Node.js and tests/interop/node_modules (npm ci --prefix tests/interop)")
    if not missing:
        return
    if IN_CI:
        pytest.fail(f"CI requires {', '.join(missing)}, which did not answer", pytrace=False)
    pytest.skip(f"{SERVICE_SKIP_PREFIX} {', '.join(missing)}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if SERVICE_SKIP_PREFIX in str(report.longrepr)
    ]
    if skipped:
        terminalreporter.write_line(
            f"frameio_oauth: {len(skipped)} test(s) skipped because a real service is missing; "
            "CI runs them against PostgreSQL and Redis.",
            yellow=True,
        )


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_loopback(host: str | bytes | None) -> bool:
    if not host:
        return True
    name = (host.decode() if isinstance(host, bytes) else host).rstrip(".").lower()
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


@pytest.fixture(autouse=True)
def nothing_leaves_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test fails if anything in this process resolves a host beyond loopback: the
    tests use Frame.io's real URLs with ``responses`` (which resolves nothing), so a missing
    mock would otherwise send a request to the real Frame.io."""
    attempts: list[str] = []
    resolve = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_loopback(host):
            return resolve(host, *args, **kwargs)
        # A name for this machine (a CI service host such as "postgres" pointed at 127.0.0.1):
        # judged by what it resolves to.
        try:
            answers = resolve(host, *args, **kwargs)
        except OSError:
            answers = []
        if answers and all(_is_loopback(answer[4][0]) for answer in answers):
            return answers
        attempts.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, f"tests may not reach {host}")

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield
    assert not attempts, f"the test tried to reach {sorted(set(attempts))} beyond loopback"


@pytest.fixture(autouse=True)
def fresh_admin_summary() -> None:
    """The token admin keeps its summary for a minute per process: not from test to test."""
    from frameio_oauth.admin import forget_token_status

    forget_token_status()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", "alice@example.com", "pw")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("bob", "bob@example.com", "pw")


@pytest.fixture
def make_token() -> Callable[..., OAuthToken]:
    def make(user: Any, **overrides: Any) -> OAuthToken:
        values: dict[str, Any] = {
            "provider": "frameio",
            "provider_user_id": f"fio-{user.pk}",
            "provider_email": f"{user.username}@frame.example",
            "access_token": f"access-{user.pk}-secret",
            "refresh_token": f"refresh-{user.pk}-secret",
            "scope": "account.read offline",
            "expires_at": timezone.now() + timedelta(hours=1),
            "next_refresh_at": timezone.now() + timedelta(minutes=55),
        }
        if "expires_at" in overrides and "next_refresh_at" not in overrides:
            # As the schedule would have set it: the default margin before expiry.
            overrides["next_refresh_at"] = overrides["expires_at"] - timedelta(minutes=5)
        values.update(overrides)
        return OAuthToken.objects.create(user=user, **values)

    return make


@pytest.fixture
def due_token(user: Any, make_token: Callable[..., OAuthToken]) -> OAuthToken:
    """The user's token inside its refresh margin: it expires in 2 minutes and has been due
    since the margin (5 minutes) began."""
    return make_token(user, expires_at=timezone.now() + timedelta(minutes=2))


@pytest.fixture
def make_due_tokens(
    django_user_model: Any, make_token: Callable[..., OAuthToken]
) -> Callable[[int], list[OAuthToken]]:
    """``count`` tokens of new users, all due now, plus one user whose token is not due."""

    def make(count: int) -> list[OAuthToken]:
        past = timezone.now() - timedelta(seconds=1)
        due = [
            make_token(django_user_model.objects.create_user(f"due{index}"), next_refresh_at=past)
            for index in range(count)
        ]
        make_token(django_user_model.objects.create_user("not-due"))
        return due

    return make


@pytest.fixture
def signed_in(client: Client, user: Any) -> Client:
    """The test client, signed in as ``user``."""
    client.force_login(user)
    return client


@pytest.fixture
def admin_browser(client: Client, django_user_model: Any) -> Client:
    """The test client, signed in as a superuser."""
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.example", "pw"))
    return client


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots."""
    return tmp_path_factory.getbasetemp() / "screenshots"


@pytest.fixture(scope="module")
def module_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One chromium per test module (starting one costs seconds); see tests/support/browser.py."""
    from tests.support.browser import chromium

    with chromium(tmp_path_factory.mktemp("profile")) as driver:
        yield driver


@pytest.fixture
def provider_http() -> Iterator[responses.RequestsMock]:
    """Every HTTP call is mocked; an unexpected one fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The local Frame.io stand-in: django-oauth-toolkit with rotation and reuse protection."""
    from tests.support.standin import start_standin

    server = start_standin(
        tmp_path_factory.mktemp("standin") / "standin.sqlite3",
        # DOT accepts any port on a loopback-IP redirect URI (RFC 8252), as the live server
        # of the browser tests picks its port at random.
        redirect_uris=["http://testserver/frameio/callback/", "http://127.0.0.1/frameio/callback/"],
        users={"demo": "demo-pw", "erin": "erin-pw", "frank": "frank-pw"},
    )
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)
