from __future__ import annotations

import threading
from typing import Any

import pytest
import responses
from django.db import connection

from frameio_oauth.http import session_for
from frameio_oauth.models import OAuthToken
from tests.conftest import TOKEN_URL

API = "https://api.frame.io/v2/me"
NEW = {"access_token": "AT-new", "refresh_token": "RT-new", "expires_in": 3600}


def api_accepting(accepted: str, barrier: threading.Barrier | None = None) -> Any:
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        if request.headers["Authorization"] == f"Bearer {accepted}":
            return 200, {}, '{"id": "me"}'
        if barrier is not None:
            barrier.wait(timeout=10)  # both threads hold a rejected token at the same moment
        return 401, {}, '{"error": "invalid_token"}'

    return answer


@pytest.mark.django_db
def test_a_request_sends_the_stored_bearer(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-1")
    provider_http.add_callback(responses.GET, API, callback=api_accepting("AT-1"))
    assert session_for(user).get(API).json() == {"id": "me"}
    assert provider_http.calls[0].request.headers["Authorization"] == "Bearer AT-1"


@pytest.mark.django_db
def test_a_401_refreshes_once_and_retries_once(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-revoked")
    provider_http.add_callback(responses.GET, API, callback=api_accepting("AT-new"))
    provider_http.post(TOKEN_URL, json=NEW)
    response = session_for(user).get(API)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert [c.request.url for c in provider_http.calls].count(TOKEN_URL) == 1
    assert OAuthToken.objects.get(user=user).access_token == "AT-new"


@pytest.mark.django_db
def test_a_second_401_is_returned_not_retried_again(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-revoked")
    provider_http.add_callback(responses.GET, API, callback=api_accepting("nothing"))
    provider_http.post(TOKEN_URL, json=NEW)
    response = session_for(user).get(API)
    assert response.status_code == 401
    assert len([c for c in provider_http.calls if c.request.url == API]) == 2
    assert len([c for c in provider_http.calls if c.request.url == TOKEN_URL]) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_threads_with_a_401_together_refresh_only_once(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-revoked")
    provider_http.add_callback(
        responses.GET, API, callback=api_accepting("AT-new", threading.Barrier(2))
    )
    provider_http.post(TOKEN_URL, json=NEW)
    statuses: list[int] = []

    def call() -> None:
        try:
            statuses.append(session_for(user).get(API).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200, 200]
    assert len([c for c in provider_http.calls if c.request.url == TOKEN_URL]) == 1
