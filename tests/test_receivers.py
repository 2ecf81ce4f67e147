"""Deleting a user revokes their grant at Frame.io once the deletion commits
(frameio_oauth/receivers.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import responses
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client

from frameio_oauth import signals
from frameio_oauth.models import OAuthToken
from tests.support.frameio import REVOKE_URL, revoked_tokens

pytestmark = pytest.mark.django_db

Commits = Callable[..., Any]


class ProxyUser(User):
    class Meta:
        proxy = True
        app_label = "auth"


def test_deleting_a_user_with_a_token_revokes_their_grant_at_frameio(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Commits,
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    with django_capture_on_commit_callbacks(execute=True):
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
    django_capture_on_commit_callbacks: Commits,
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, status=503)
    with caplog.at_level(logging.WARNING, logger="frameio_oauth"):
        with django_capture_on_commit_callbacks(execute=True):
            user.delete()
    assert not django_user_model.objects.filter(username="alice").exists()
    assert not OAuthToken.objects.exists()
    assert f"deleted user {token.user_id}" in caplog.text
    assert token.refresh_token not in caplog.text
    assert token.access_token not in caplog.text


def test_deleting_users_in_bulk_revokes_each_grant(
    user: Any,
    other_user: Any,
    django_user_model: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Commits,
) -> None:
    tokens = [make_token(user), make_token(other_user)]
    provider_http.post(REVOKE_URL, body="")
    with django_capture_on_commit_callbacks(execute=True):
        django_user_model.objects.filter(pk__in=[user.pk, other_user.pk]).delete()
    assert sorted(revoked_tokens(provider_http)) == sorted(t.refresh_token for t in tokens)
    assert not OAuthToken.objects.exists()


def test_deleting_a_user_in_the_admin_revokes_their_grant(
    client: Client,
    django_user_model: Any,
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Commits,
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.example", "pw"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert revoked_tokens(provider_http) == [token.refresh_token]


def test_a_user_deletion_rolled_back_revokes_nothing(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Commits,
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            user.delete()
            raise RuntimeError("the caller's transaction fails after the deletion")
    assert OAuthToken.objects.filter(pk=token.pk).exists()
    assert len(provider_http.calls) == 0


def test_a_user_deletion_sends_token_revoked_after_the_revocation(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Commits,
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    sent: list[dict[str, Any]] = []
    signals.token_revoked.connect(lambda **kw: sent.append(kw), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            user.delete()
    finally:
        signals.token_revoked.disconnect(dispatch_uid="t")
    assert [(kw["provider_user_id"], kw["revoked_at_provider"]) for kw in sent] == [
        (token.provider_user_id, True)
    ]


def test_deleting_a_user_through_a_proxy_model_revokes_their_grant(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Commits,
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    with django_capture_on_commit_callbacks(execute=True):
        ProxyUser.objects.get(pk=user.pk).delete()
    assert revoked_tokens(provider_http) == [token.refresh_token]


def test_a_token_that_cannot_be_decrypted_does_not_stop_the_user_deletion(
    user: Any,
    django_user_model: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Commits,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = make_token(user)
    OAuthToken.objects.filter(pk=token.pk).update(access_token_ciphertext="not-a-ciphertext")
    with caplog.at_level(logging.WARNING, logger="frameio_oauth"):
        with django_capture_on_commit_callbacks(execute=True):
            user.delete()
    assert not django_user_model.objects.filter(username="alice").exists()
    assert len(provider_http.calls) == 0
    assert f"deleted user {token.user_id}" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_committed_user_deletion_revokes_once_after_the_commit_with_no_row_locked(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user)
    in_transaction: list[bool] = []

    def revoke(request: Any) -> tuple[int, dict[str, str], str]:
        in_transaction.append(connection.in_atomic_block)
        return 200, {}, ""

    provider_http.add_callback(responses.POST, REVOKE_URL, callback=revoke)
    user.delete()
    assert in_transaction == [False]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_short_idle_in_transaction_limit_does_not_break_a_user_deletion(
    user: Any, django_user_model: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user)
    connection.close()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET idle_in_transaction_session_timeout = 300")

        def slow(request: Any) -> tuple[int, dict[str, str], str]:
            time.sleep(0.8)
            return 200, {}, ""

        provider_http.add_callback(responses.POST, REVOKE_URL, callback=slow)
        user.delete()
        assert len(provider_http.calls) == 1
        assert not django_user_model.objects.filter(username="alice").exists()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_user_outside_any_transaction_revokes_and_commits(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    user.delete()
    assert revoked_tokens(provider_http) == [token.refresh_token]
    assert not OAuthToken.objects.exists()
