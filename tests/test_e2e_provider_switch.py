"""End to end: a site switches from one authorization server to another (legacy Frame.io to
Frame.io V4 through Adobe IMS), each played by a real stand-in (django-oauth-toolkit) on
loopback. The grants of the old server are never sent to either server again: the token
endpoints' own counters (/_standin/stats) and access logs show no request; the user connects
again at the new server, whose grant then refreshes there."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings

from frameio_oauth import services
from frameio_oauth.exceptions import ReauthorizationRequired
from frameio_oauth.models import OAuthToken
from frameio_oauth.standin import Mode
from tests.support.standin import CONFIDENTIAL, Standin, sign_in_with_frameio, start_standin
from tests.support.tokens import make_due

pytestmark = pytest.mark.django_db

USERS = {"demo": "demo-pw", "erin": "erin-pw"}


@dataclass
class Server:
    standin: Standin
    log: Path

    def token_requests(self) -> int:
        return sum(self.standin.stats().values())

    def revocations(self) -> int:
        """Revocation requests in the server's access log (its stats count token requests)."""
        lines = self.log.read_text().splitlines()
        return sum('"POST ' in line and "revoke" in line for line in lines)


def started(folder: Path, mode: Mode) -> Iterator[Server]:
    database = folder / "standin.sqlite3"
    standin = start_standin(database, ["http://testserver/frameio/callback/"], USERS, mode=mode)
    try:
        yield Server(standin, database.with_suffix(".log"))
    finally:
        standin.process.terminate()
        standin.process.wait(timeout=10)


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server the site signed in with first: legacy Frame.io's shapes."""
    yield from started(tmp_path_factory.mktemp("old-server"), Mode.LEGACY)


@pytest.fixture(scope="module")
def new(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server the site switches to: Frame.io V4 through Adobe IMS."""
    yield from started(tmp_path_factory.mktemp("new-server"), Mode.IMS)


def legacy_settings(server: Server) -> dict[str, Any]:
    """The "frameio" preset, every endpoint at the legacy stand-in."""
    return server.standin.settings(CONFIDENTIAL)


def v4_settings(server: Server) -> dict[str, Any]:
    """The "adobe-ims" preset with its scopes, every endpoint at the IMS stand-in."""
    return server.standin.settings(CONFIDENTIAL)


def requests_at(*servers: Server) -> list[tuple[int, int]]:
    return [(server.token_requests(), server.revocations()) for server in servers]


@pytest.fixture
def quiet(old: Server, new: Server) -> None:
    for server in (old, new):
        server.standin.reset_stats()


def test_after_the_switch_an_old_grant_is_marked_with_no_request_and_the_user_connects_again(
    client: Client, user: Any, old: Server, new: Server, quiet: None
) -> None:
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=legacy_settings(old)):
        sign_in_with_frameio(client, old.standin, "demo")
    first = OAuthToken.objects.get(user=user)
    assert first.authorization_server == old.standin.url
    old_access = first.access_token
    make_due(first)
    before = requests_at(old, new)

    with override_settings(FRAMEIO_OAUTH=v4_settings(new)):
        with pytest.raises(ReauthorizationRequired, match="connect again"):
            services.get_access_token(user)
        summary = services.refresh_due()
        marked = OAuthToken.objects.get(user=user)
        assert requests_at(old, new) == before
        assert (summary.refreshed, summary.failed) == (0, 0)
        assert marked.status == OAuthToken.Status.REAUTH_REQUIRED
        assert old.standin.url in marked.last_error
        assert new.standin.url in marked.last_error

        sign_in_with_frameio(client, new.standin, "demo")
        second = OAuthToken.objects.get(user=user)
        assert (second.authorization_server, second.status) == (
            new.standin.url,
            OAuthToken.Status.ACTIVE,
        )
        refreshed = services.refresh(second.pk, force=True)

    assert new.standin.stats() == {"authorization_code": 1, "refresh_token": 1}
    assert requests_at(old) == [before[0]]
    assert new.revocations() == before[1][1]
    # Read from /v4/me's "data" envelope at the callback; the refreshed token works there.
    assert second.provider_email == "demo@example.com"
    assert new.standin.me(refreshed.access_token).status_code == 200
    # Nothing was revoked at the old server either: its grant lives on there, unspent.
    assert old.standin.me(old_access).status_code == 200


def test_disconnecting_an_old_grant_after_the_switch_deletes_it_here_with_no_request(
    client: Client, user: Any, old: Server, new: Server, quiet: None
) -> None:
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=legacy_settings(old)):
        sign_in_with_frameio(client, old.standin, "erin")
    old_access = OAuthToken.objects.get(user=user).access_token
    before = requests_at(old, new)
    with override_settings(FRAMEIO_OAUTH=v4_settings(new)):
        response = client.post("/frameio/disconnect/")
    assert response.status_code == 302
    assert not OAuthToken.objects.filter(user=user).exists()
    assert requests_at(old, new) == before
    assert old.standin.me(old_access).status_code == 200
