"""The scope of a refresh, against a real OAuth 2.0 server (the django-oauth-toolkit stand-in),
which refuses a refresh that asks for a scope its grant does not hold (RFC 6749 §6)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from frameio_oauth import services
from frameio_oauth.models import OAuthToken
from frameio_oauth.standin import Mode
from tests.support.standin import (
    CONFIDENTIAL,
    Standin,
    running_standin,
    scopes_of,
    sign_in_with_frameio,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def legacy_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    yield from running_standin(tmp_path_factory, {"demo": "demo-pw"}, mode=Mode.LEGACY)


def test_a_grant_without_the_presets_offline_scope_refreshes_at_the_server(
    client: Client, user: Any, legacy_standin: Standin
) -> None:
    # The legacy preset's offline scope is "offline"; this grant holds "offline_access", which
    # the legacy server (ORY Hydra) also knows.
    standin = legacy_standin
    client.force_login(user)
    config = standin.settings(CONFIDENTIAL, SCOPES=["openid", "offline_access"])
    with override_settings(FRAMEIO_OAUTH=config):
        sign_in_with_frameio(client, standin, "demo")
        before = OAuthToken.objects.get(user=user)
        standin.reset_stats()
        after = services.refresh(before.pk, force=True)
    assert standin.stats().get("refresh_token") == 1
    assert after.refresh_token != before.refresh_token
    assert set(after.scope.split()) == {"openid", "offline_access"}
    assert standin.me(after.access_token).status_code == 200


def test_a_refresh_the_server_refuses_for_its_scope_is_made_again_as_granted(
    client: Client, user: Any, standin: Standin
) -> None:
    client.force_login(user)
    granted = standin.settings(CONFIDENTIAL, SCOPES=["openid", "offline_access"])
    with override_settings(FRAMEIO_OAUTH=granted):
        sign_in_with_frameio(client, standin, "demo")
    # A recorded scope that claims more than the server granted: the narrowed scope the
    # refresh asks for then holds "email", which the server refuses with invalid_scope.
    OAuthToken.objects.filter(user=user).update(scope="openid,email,offline_access")
    before = OAuthToken.objects.get(user=user)
    wider = standin.settings(CONFIDENTIAL, SCOPES=["openid", "email", "offline_access"])
    standin.reset_stats()
    with override_settings(FRAMEIO_OAUTH=wider):
        after = services.refresh(before.pk, force=True)
    assert standin.stats().get("refresh_token") == 2
    assert after.refresh_token != before.refresh_token
    assert scopes_of(after.scope) == {"openid", "offline_access"}
    assert after.failure_count == 0
    assert standin.me(after.access_token).status_code == 200
