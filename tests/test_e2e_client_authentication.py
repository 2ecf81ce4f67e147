"""HTTP Basic client authentication against django-oauth-toolkit (the stand-in), with a client
secret that is not all letters and digits: RFC 6749 §2.3.1 form-urlencodes both parts first,
and the server decodes them so."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from frameio_oauth import provider
from frameio_oauth.exceptions import ReauthorizationRequired
from tests.support.standin import CONFIDENTIAL, Standin, start_standin

AWKWARD_SECRET = "s3cr+t %/&=é:x"


@pytest.fixture(scope="module")
def awkward_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    """A stand-in of its own (the shared one keeps its plain secret), whose confidential
    client has AWKWARD_SECRET."""
    db_path: Path = tmp_path_factory.mktemp("standin-awkward") / "standin.sqlite3"
    server = start_standin(db_path, redirect_uris=["http://testserver/cb/"], users={})
    with sqlite3.connect(db_path) as db:
        db.execute(
            "UPDATE oauth2_provider_application SET client_secret = ? WHERE client_id = ?",
            [AWKWARD_SECRET, CONFIDENTIAL["CLIENT_ID"]],
        )
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


def test_an_awkward_client_secret_authenticates_at_the_token_endpoint(
    awkward_standin: Standin,
) -> None:
    client = {**CONFIDENTIAL, "CLIENT_SECRET": AWKWARD_SECRET}
    with override_settings(FRAMEIO_OAUTH=awkward_standin.settings(client)):
        # The client is authenticated, so the unknown refresh token is what gets refused
        # (invalid_grant); a secret the server could not read would be invalid_client.
        with pytest.raises(ReauthorizationRequired, match="invalid_grant"):
            provider.refresh_grant("no-such-refresh-token")
