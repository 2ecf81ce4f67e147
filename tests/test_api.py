"""The Frame.io API session (session_for): the bearer goes to the API's origin only, and a 401
refreshes once and retries once."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
import responses
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from frameio_oauth.exceptions import NotConnected, ReauthorizationRequired
from frameio_oauth.http import api_origins, origin_of, session_for
from frameio_oauth.models import OAuthToken
from tests.support.frameio import NEW, TOKEN_URL
from tests.support.settings import FRAMEIO_OAUTH

API = "https://api.frame.io/v2/me"


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
def test_an_api_that_refuses_every_token_does_not_rotate_the_grant_on_every_request(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # A missing scope, say: the refreshed token is refused too. One rotation, not one a request.
    make_token(user, access_token="AT-refused")
    provider_http.add_callback(responses.GET, API, callback=api_accepting("nothing"))
    provider_http.post(TOKEN_URL, json=NEW)
    session = session_for(user)
    statuses = [session.get(API).status_code for _ in range(5)]
    assert statuses == [401] * 5
    assert [c.request.url for c in provider_http.calls].count(TOKEN_URL) == 1


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


UPLOAD = "https://bucket.s3.amazonaws.com/upload?X-Amz-Signature=abc"


@pytest.mark.django_db
def test_a_request_to_another_host_carries_no_bearer(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-1")
    provider_http.put(UPLOAD, status=200)
    session_for(user).put(UPLOAD, data=b"bytes")
    assert "Authorization" not in provider_http.calls[0].request.headers


@pytest.mark.django_db
def test_a_401_from_another_host_does_not_refresh(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-1")
    provider_http.put(UPLOAD, status=401)
    response = session_for(user).put(UPLOAD, data=b"bytes")
    assert response.status_code == 401
    assert [c.request.url for c in provider_http.calls] == [UPLOAD]
    assert OAuthToken.objects.get(user=user).access_token == "AT-1"


@pytest.mark.parametrize(
    "url",
    [
        "http://api.frame.io/v2/me",
        "https://api.frame.io:8443/v2/me",
        "https://api.frame.io.evil.example/v2/me",
        "https://evil.example/v2/me?next=https://api.frame.io",
        "https://api.frame.io@evil.example/v2/me",
    ],
)
@pytest.mark.django_db
def test_a_look_alike_of_the_api_origin_carries_no_bearer(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, url: str
) -> None:
    make_token(user, access_token="AT-1")
    provider_http.get(url, status=200)
    session_for(user).get(url)
    assert "Authorization" not in provider_http.calls[0].request.headers


@pytest.mark.parametrize(
    "url",
    [
        "https://api.frame.io/v4/accounts",
        "https://API.Frame.IO/v2/me",
        "https://api.frame.io:443/v2/me",
        "https://api.frame.io./v2/me",
        "HTTPS://api.frame.io/",
    ],
)
def test_spellings_of_the_api_origin_are_one_origin(url: str) -> None:
    assert origin_of(url) in api_origins()


def test_the_user_info_urls_origin_is_an_api_origin() -> None:
    stand_in = {**FRAMEIO_OAUTH, "USERINFO_URL": "http://127.0.0.1:8001/api/v2/me"}
    with override_settings(FRAMEIO_OAUTH=stand_in):
        assert api_origins() == {"https://api.frame.io:443", "http://127.0.0.1:8001"}


@pytest.mark.django_db
def test_a_request_to_the_configured_user_info_origin_carries_the_bearer(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-1")
    provider_http.get("http://127.0.0.1:8001/api/v2/projects", status=200)
    stand_in = {**FRAMEIO_OAUTH, "USERINFO_URL": "http://127.0.0.1:8001/api/v2/me"}
    with override_settings(FRAMEIO_OAUTH=stand_in):
        session_for(user).get("http://127.0.0.1:8001/api/v2/projects")
    assert provider_http.calls[0].request.headers["Authorization"] == "Bearer AT-1"


@pytest.mark.parametrize(
    "body", [lambda: io.BytesIO(b"upload"), lambda: (chunk for chunk in [b"up", b"load"])]
)
@pytest.mark.django_db
def test_a_401_to_a_streamed_body_is_returned_not_retried(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, body: Any
) -> None:
    make_token(user, access_token="AT-revoked")
    provider_http.add_callback(responses.PUT, API, callback=api_accepting("AT-new"))
    provider_http.post(TOKEN_URL, json=NEW)
    response = session_for(user).put(API, data=body())
    assert response.status_code == 401
    assert [c.request.url for c in provider_http.calls] == [API, TOKEN_URL]


@pytest.mark.django_db
def test_a_401_to_a_streamed_body_still_replaces_the_token_for_the_next_request(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-revoked")
    provider_http.add_callback(responses.PUT, API, callback=api_accepting("AT-new"))
    provider_http.post(TOKEN_URL, json=NEW)
    session = session_for(user)
    session.put(API, data=io.BytesIO(b"upload"))
    assert session.put(API, data=io.BytesIO(b"upload")).status_code == 200


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


@pytest.mark.parametrize(
    "url",
    [
        "",
        "/v2/me",
        "ftp://api.frame.io/v2/me",
        "https://api.frame.io:99999/v2/me",
        "https://[::1/v2/me",
        "https://" + "a" * 64 + ".frame.io/v2/me",
    ],
    ids=["empty", "relative", "no-default-port", "port-out-of-range", "broken-ipv6", "bad-idna"],
)
def test_a_url_without_a_host_and_port_to_compare_has_no_origin_and_gets_no_bearer(
    url: str,
) -> None:
    assert origin_of(url) is None
    assert origin_of(url) not in api_origins()


@pytest.mark.django_db
def test_a_401_after_a_redirect_away_from_the_api_refreshes_nothing_and_carries_no_bearer(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # As an API endpoint that sends the client on to a pre-signed download URL.
    make_token(user, access_token="AT-1")
    provider_http.get(API, status=302, headers={"Location": UPLOAD})
    provider_http.get(UPLOAD, status=401)
    with CaptureQueriesContext(connection) as queries:
        response = session_for(user).get(API)
    assert response.status_code == 401
    # The one query reads the token for the API request; the redirect's 401 locks no row.
    assert len(queries) == 1
    assert [c.request.url for c in provider_http.calls] == [API, UPLOAD]
    assert "Authorization" not in provider_http.calls[1].request.headers
    assert OAuthToken.objects.get(user=user).access_token == "AT-1"


@pytest.mark.django_db
def test_a_401_for_a_user_who_disconnected_meanwhile_raises_not_connected(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-1")

    def disconnected_then_refused(request: Any) -> tuple[int, dict[str, str], str]:
        OAuthToken.objects.filter(user=user).delete()
        return 401, {}, '{"error": "invalid_token"}'

    provider_http.add_callback(responses.GET, API, callback=disconnected_then_refused)
    with pytest.raises(NotConnected):
        session_for(user).get(API)
    assert [c.request.url for c in provider_http.calls] == [API]


@pytest.mark.django_db
def test_a_401_whose_refresh_frameio_refuses_raises_reauthorization_required(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="AT-revoked")
    provider_http.add_callback(responses.GET, API, callback=api_accepting("nothing"))
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(ReauthorizationRequired):
        session_for(user).get(API)
    assert OAuthToken.objects.get(user=user).status == OAuthToken.Status.REAUTH_REQUIRED
    assert [c.request.url for c in provider_http.calls] == [API, TOKEN_URL]
