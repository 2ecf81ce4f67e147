"""Deleting a user revokes their grant at Frame.io first (frameio_oauth/receivers.py)."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock
from urllib.parse import parse_qs

import pytest
import responses
from django.db import transaction
from django.test import Client

from frameio_oauth.exceptions import FrameioOAuthError
from frameio_oauth.models import OAuthToken
from tests.conftest import REVOKE_URL

pytestmark = pytest.mark.django_db


def revoked_tokens(provider_http: responses.RequestsMock) -> list[str]:
    return [parse_qs(str(call.request.body))["token"][0] for call in provider_http.calls]


def test_deleting_a_user_with_a_token_revokes_their_grant_at_frameio(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    user.delete()
    assert revoked_tokens(provider_http) == [token.refresh_token]
    assert not OAuthToken.objects.exists()


def test_deleting_a_user_without_a_token_calls_no_provider(
    user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(REVOKE_URL, body="")
    user.delete()
    assert len(provider_http.calls) == 0


def test_a_frameio_outage_does_not_stop_the_user_deletion(
    user: Any,
    django_user_model: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, status=503)
    with caplog.at_level(logging.WARNING, logger="frameio_oauth"):
        user.delete()
    assert not django_user_model.objects.filter(username="alice").exists()
    assert not OAuthToken.objects.exists()
    assert f"deleted user {token.user_id}" in caplog.text
    assert token.refresh_token not in caplog.text
    assert token.access_token not in caplog.text


def test_a_disconnect_that_raises_does_not_stop_the_user_deletion(
    user: Any, django_user_model: Any, make_token: Any
) -> None:
    make_token(user)
    refusal = FrameioOAuthError("refused inside an open transaction")
    with mock.patch("frameio_oauth.services.disconnect", side_effect=refusal):
        user.delete()
    assert not django_user_model.objects.filter(username="alice").exists()
    assert not OAuthToken.objects.exists()


def test_deleting_users_in_bulk_revokes_each_grant(
    user: Any,
    other_user: Any,
    django_user_model: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
) -> None:
    tokens = [make_token(user), make_token(other_user)]
    provider_http.post(REVOKE_URL, body="")
    django_user_model.objects.filter(pk__in=[user.pk, other_user.pk]).delete()
    assert sorted(revoked_tokens(provider_http)) == sorted(t.refresh_token for t in tokens)
    assert not OAuthToken.objects.exists()


def test_deleting_a_user_in_the_admin_revokes_their_grant(
    client: Client,
    django_user_model: Any,
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.example", "pw"))
    response = client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert revoked_tokens(provider_http) == [token.refresh_token]


def test_a_user_deletion_rolled_back_keeps_the_user_with_a_revoked_grant(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # The revocation runs before the deletion commits: rolled back, the user keeps a dead
    # grant (the next refresh asks them to connect again), never a deleted row with a live one.
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    with pytest.raises(RuntimeError), transaction.atomic():
        user.delete()
        raise RuntimeError("the caller's transaction fails after the deletion")
    assert OAuthToken.objects.filter(pk=token.pk).exists()
    assert len(provider_http.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_deleting_a_user_outside_any_transaction_revokes_and_commits(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    user.delete()
    assert revoked_tokens(provider_http) == [token.refresh_token]
    assert not OAuthToken.objects.exists()
