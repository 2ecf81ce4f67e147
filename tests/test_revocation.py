"""Disconnecting while the provider is down: the row stays, disconnected (status ``revoked``),
until a sweep gets the revocation through. The provider is mocked here; test_e2e.py does the
same against the django-oauth-toolkit stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import responses
import time_machine
from django.utils import timezone

from frameio_oauth import accounts, provider, services, signals
from frameio_oauth.exceptions import CallbackError, NotConnected
from frameio_oauth.models import OAuthToken
from frameio_oauth.services import _revocations
from tests.conftest import REVOKE_URL, TOKEN_URL

pytestmark = pytest.mark.django_db


@pytest.fixture
def announced() -> Iterator[list[dict[str, Any]]]:
    """Every token_revoked sent during the test."""
    calls: list[dict[str, Any]] = []
    signals.token_revoked.connect(
        lambda **kwargs: calls.append(kwargs), weak=False, dispatch_uid="test-revoked"
    )
    yield calls
    signals.token_revoked.disconnect(dispatch_uid="test-revoked")


@pytest.fixture
def pending(user: Any, make_token: Any, provider_http: responses.RequestsMock) -> OAuthToken:
    """A disconnect that met a provider outage."""
    token = make_token(user)
    provider_http.post(REVOKE_URL, status=503)
    result = services.disconnect(user)
    assert result.pending and not result.revoked_at_provider
    provider_http.reset()
    return OAuthToken.objects.get(pk=token.pk)


def revoked_tokens(mock: responses.RequestsMock) -> list[str]:
    return [
        call.request.body.split("token=")[1].split("&")[0]
        for call in mock.calls
        if call.request.url == REVOKE_URL
    ]


def test_an_outage_leaves_the_grant_stored_but_disconnected(
    user: Any, pending: OAuthToken, announced: list[dict[str, Any]]
) -> None:
    assert pending.status == OAuthToken.Status.REVOKED
    assert pending.refresh_token == f"refresh-{user.pk}-secret"
    assert pending.failure_count == 1
    assert pending.next_refresh_at > timezone.now()
    assert announced == []  # nothing is gone yet
    with pytest.raises(NotConnected):
        services.get_access_token(user)
    with pytest.raises(NotConnected):
        services.refresh(pending.pk, force=True)


def test_the_sweep_gets_the_revocation_through_and_removes_the_row(
    user: Any,
    pending: OAuthToken,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
) -> None:
    provider_http.post(REVOKE_URL, body="")
    with time_machine.travel(pending.next_refresh_at + timedelta(seconds=1)):
        summary = services.refresh_due()
    assert summary.revoked == 1
    assert summary.refreshed == 0
    assert revoked_tokens(provider_http) == [f"refresh-{user.pk}-secret"]
    assert not OAuthToken.objects.filter(pk=pending.pk).exists()
    assert [(call["user"], call["revoked_at_provider"]) for call in announced] == [(user, True)]


def test_a_revocation_is_not_retried_before_its_time(
    pending: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    assert services.refresh_due().revoked == 0
    assert len(provider_http.calls) == 0
    assert OAuthToken.objects.filter(pk=pending.pk).exists()


def test_a_revocation_still_failing_backs_off_and_keeps_the_row(
    pending: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(REVOKE_URL, status=502, body="<html>bad gateway</html>")
    with time_machine.travel(pending.next_refresh_at + timedelta(seconds=1)):
        assert services.retry_due_revocations() == 0
        now = timezone.now()
    again = OAuthToken.objects.get(pk=pending.pk)
    assert again.failure_count == 2
    assert again.next_refresh_at > now
    assert again.status == OAuthToken.Status.REVOKED
    assert "502" in again.last_error


def test_after_the_last_attempt_the_row_goes_and_says_the_provider_never_confirmed(
    pending: OAuthToken, provider_http: responses.RequestsMock, announced: list[dict[str, Any]]
) -> None:
    OAuthToken.objects.filter(pk=pending.pk).update(
        failure_count=_revocations.MAX_REVOCATION_ATTEMPTS - 1
    )
    provider_http.post(REVOKE_URL, status=503)
    with time_machine.travel(pending.next_refresh_at + timedelta(seconds=1)):
        assert services.retry_due_revocations() == 1
    assert not OAuthToken.objects.filter(pk=pending.pk).exists()
    assert [call["revoked_at_provider"] for call in announced] == [False]


def test_a_disconnected_identity_no_longer_signs_its_old_user_in(pending: OAuthToken) -> None:
    info = provider.UserInfo(id=pending.provider_user_id, email="alice@frame.example")
    with pytest.raises(CallbackError) as refused:
        accounts.user_for_identity(info)
    assert refused.value.code == "no_account"


NEW_GRANT = provider.TokenResponse(
    access_token="AT-new", token_type="bearer", expires_in=3600, refresh_token="RT-new"
)


def test_connecting_again_revokes_the_pending_grant_once_more_and_stores_the_new_one(
    user: Any,
    pending: OAuthToken,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    provider_http.post(REVOKE_URL, body="")
    info = provider.UserInfo(id=pending.provider_user_id, email="alice@frame.example")
    with django_capture_on_commit_callbacks(execute=True):
        stored = services.store_grant(user, NEW_GRANT, info)
    assert revoked_tokens(provider_http) == [f"refresh-{user.pk}-secret"]
    assert stored.status == OAuthToken.Status.ACTIVE
    assert services.get_access_token(user) == "AT-new"
    assert [call["revoked_at_provider"] for call in announced] == [True]


def test_another_user_may_connect_the_identity_a_pending_row_still_names(
    other_user: Any, pending: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    # Not "linked elsewhere": the first user disconnected; only the revocation is pending.
    provider_http.post(REVOKE_URL, status=503)
    info = provider.UserInfo(id=pending.provider_user_id)
    services.store_grant(other_user, NEW_GRANT, info)
    assert OAuthToken.objects.get().user == other_user
    assert services.get_access_token(other_user) == "AT-new"


def test_the_sweep_never_refreshes_a_disconnected_row(
    pending: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={"access_token": "AT-x", "expires_in": 3600})
    provider_http.post(REVOKE_URL, status=503)
    OAuthToken.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    with time_machine.travel(pending.next_refresh_at + timedelta(seconds=1)):
        services.refresh_due()
    assert [call.request.url for call in provider_http.calls] == [REVOKE_URL]
