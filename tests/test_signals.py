"""Signals go out through one robust send: a receiver's bug is logged with its traceback and
never fails what has already been committed."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from frameio_oauth import provider, services, signals
from frameio_oauth.models import OAuthToken
from tests.support.frameio import NEW, TOKEN_URL
from tests.support.signals import Raising

pytestmark = pytest.mark.django_db


def test_a_raising_receiver_does_not_fail_a_committed_on_demand_refresh(
    user: Any, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    with Raising(signals.token_refreshed):
        assert services.get_access_token(user) == "AT-new"


def test_a_raising_receiver_does_not_stop_the_sweep(
    make_due_tokens: Any, provider_http: responses.RequestsMock
) -> None:
    make_due_tokens(3)
    provider_http.post(TOKEN_URL, json=NEW)
    with Raising(signals.token_refreshed) as receiver:
        summary = services.refresh_due()
    assert summary.refreshed == 3
    assert len(receiver.calls) == 3


def test_a_raising_receiver_is_logged_with_its_traceback(
    user: Any,
    due_token: OAuthToken,
    provider_http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    with Raising(signals.token_refreshed):
        services.get_access_token(user)
    [record] = [r for r in caplog.records if r.name == "frameio_oauth.services" and r.exc_info]
    assert record.levelname == "ERROR"
    assert "token_refreshed" in record.getMessage()
    assert str(record.exc_info[1]) == "a receiver's bug"


def test_a_raising_receiver_does_not_fail_a_committed_grant(
    user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    grant = provider.TokenResponse(
        access_token="AT-1", token_type="bearer", expires_in=3600, refresh_token="RT-1"
    )
    with Raising(signals.token_obtained), django_capture_on_commit_callbacks(execute=True):
        services.store_grant(user, grant, provider.UserInfo(id="fio-1"))
    assert services.get_access_token(user) == "AT-1"
