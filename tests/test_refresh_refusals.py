"""A refresh asked for a row it must not refresh: gone, disconnected, needing the user's
consent again, or holding nothing to refresh with. Each ends without a provider call."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.utils import timezone

from frameio_oauth import services, signals
from frameio_oauth.exceptions import NotConnected, ReauthorizationRequired
from frameio_oauth.models import OAuthToken
from frameio_oauth.tasks import refresh_token_if_due

pytestmark = pytest.mark.django_db

MISSING_ID = 2_000_000_000


@pytest.fixture
def reauth_signals() -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []
    signals.reauthorization_required.connect(
        lambda **kwargs: calls.append(kwargs), weak=False, dispatch_uid="refusals-reauth"
    )
    yield calls
    signals.reauthorization_required.disconnect(dispatch_uid="refusals-reauth")


def test_refreshing_a_token_id_that_does_not_exist_raises_not_connected(
    provider_http: responses.RequestsMock,
) -> None:
    with pytest.raises(NotConnected, match="does not exist"):
        services.refresh(MISSING_ID, force=True)
    assert len(provider_http.calls) == 0


def test_a_fanned_out_task_for_a_row_removed_meanwhile_ends_quietly(
    provider_http: responses.RequestsMock,
) -> None:
    # SKIP LOCKED finds a removed row as it finds a held one: nothing to take, no error.
    assert refresh_token_if_due.apply(args=[MISSING_ID]).get() == "gone"
    assert len(provider_http.calls) == 0


def test_a_fanned_out_task_skips_a_row_that_needs_reauthorization_meanwhile(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(
        user, status=OAuthToken.Status.REAUTH_REQUIRED, next_refresh_at=timezone.now()
    )
    assert refresh_token_if_due.apply(args=[token.pk]).get() == "not_due"
    assert len(provider_http.calls) == 0
    assert OAuthToken.objects.get(pk=token.pk).status == OAuthToken.Status.REAUTH_REQUIRED


def test_a_forced_refresh_of_a_token_needing_reauthorization_raises_without_calling_frameio(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user, status=OAuthToken.Status.REAUTH_REQUIRED)
    with pytest.raises(ReauthorizationRequired):
        services.refresh(token.pk, force=True)
    assert len(provider_http.calls) == 0


def test_an_expired_token_without_a_refresh_token_needs_reauthorization_and_says_why(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    reauth_signals: list[dict[str, Any]],
) -> None:
    # A grant issued without the offline scope: once its access token expires, only the user
    # can get a new one.
    past = timezone.now() - timedelta(minutes=1)
    token = make_token(user, refresh_token=None, expires_at=past, next_refresh_at=past)
    with pytest.raises(ReauthorizationRequired, match="offline scope was not granted"):
        services.get_access_token(user)
    row = OAuthToken.objects.get(pk=token.pk)
    assert (row.status, row.next_refresh_at) == (OAuthToken.Status.REAUTH_REQUIRED, None)
    assert "offline scope" in row.last_error
    assert [call["token"].pk for call in reauth_signals] == [token.pk]
    assert len(provider_http.calls) == 0
