"""frameio_oauth.testing, used as a project's own tests would use it: the pytest fixture, and
FakeFrameio in a Django TestCase."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.test import TestCase

from frameio_oauth import services
from frameio_oauth.api import session_for
from frameio_oauth.exceptions import ReauthorizationRequired
from frameio_oauth.models import OAuthToken
from frameio_oauth.testing import FakeFrameio, connect, expire, make_due

pytestmark = pytest.mark.django_db


def test_a_connected_users_token_is_handed_out_without_a_request(
    frameio: FakeFrameio, user: Any
) -> None:
    token = connect(user)
    assert services.get_access_token(user) == token.access_token
    assert frameio.refreshes == 0


@pytest.mark.parametrize("make", [make_due, expire], ids=["due", "expired"])
def test_a_due_or_expired_token_is_refreshed_by_the_fake_with_a_rotated_pair(
    frameio: FakeFrameio, user: Any, make: Any
) -> None:
    before = connect(user)
    make(user)
    assert services.get_access_token(user) != before.access_token
    after = OAuthToken.objects.get(user=user)
    assert after.refresh_token != before.refresh_token
    assert frameio.refreshes == 1


def test_the_api_answers_a_live_token_and_refuses_a_replaced_one(
    frameio: FakeFrameio, user: Any
) -> None:
    frameio.api("GET", "/v4/me", json={"data": {"id": "frameio-user-1"}})
    connect(user)
    assert session_for(user).get("https://api.frame.io/v4/me").json()["data"]["id"]
    stale = OAuthToken.objects.get(user=user).access_token
    make_due(user)
    services.get_access_token(user)  # rotates: the stale token is no longer live
    answer = requests.get(
        "https://api.frame.io/v4/me", headers={"Authorization": f"Bearer {stale}"}, timeout=5
    )
    assert answer.status_code == 401


def test_an_api_401_makes_the_session_refresh_once_and_retry(
    frameio: FakeFrameio, user: Any
) -> None:
    frameio.api("GET", "/v4/projects", json={"data": []})
    connect(user)
    frameio.end_access_tokens()
    response = session_for(user).get("https://api.frame.io/v4/projects")
    assert response.status_code == 200
    assert [answer.status_code for answer in response.history] == [401]
    assert frameio.refreshes == 1


def test_a_refresh_token_used_twice_ends_the_grant_as_frameio_does(
    frameio: FakeFrameio, user: Any
) -> None:
    connect(user)
    spent = OAuthToken.objects.get(user=user).refresh_token
    make_due(user)
    services.get_access_token(user)
    # A database restored from a backup made before that refresh:
    row = OAuthToken.objects.get(user=user)
    row.refresh_token = spent
    row.save()
    make_due(user)
    with pytest.raises(ReauthorizationRequired):
        services.get_access_token(user)


def test_a_grant_ended_at_frameio_needs_the_user_to_connect_again(
    frameio: FakeFrameio, user: Any
) -> None:
    connect(user)
    frameio.revoke_everything()
    make_due(user)
    with pytest.raises(ReauthorizationRequired):
        services.get_access_token(user)


def test_disconnecting_revokes_at_the_fake(frameio: FakeFrameio, user: Any) -> None:
    connect(user)
    services.disconnect(user)
    assert frameio.revocations == 1
    assert not OAuthToken.objects.filter(user=user).exists()


def test_nothing_else_reaches_the_network(frameio: FakeFrameio) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get("https://example.com/", timeout=5)


class FakeFrameioInATestCase(TestCase):
    """The same, for a project whose tests are Django TestCases."""

    def test_a_view_of_the_project_gets_a_fresh_token(self) -> None:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user("carol")
        with FakeFrameio() as frameio:
            connect(user)
            make_due(user)
            token = services.get_access_token(user)
        self.assertEqual(OAuthToken.objects.get(user=user).access_token, token)
        self.assertEqual(frameio.refreshes, 1)
