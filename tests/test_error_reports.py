"""Django's error reports (DEBUG=False e-mails, the technical 500 page's frame locals) never show
a plaintext token, wherever in our code the exception was raised.

``sensitive_variables`` cleanses only frames under a decorated function, so each test raises
from deep inside one code path and renders the report the way ``AdminEmailHandler`` does.
"""

from __future__ import annotations

import secrets
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
import requests
import responses
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.signals import got_request_exception
from django.db.models import QuerySet
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone
from django.views.debug import ExceptionReporter

from frameio_oauth import provider, services
from frameio_oauth.crypto import get_cipher
from frameio_oauth.http import session_for
from frameio_oauth.models import OAuthToken
from tests.support.callback import start
from tests.support.frameio import TOKEN_URL, USERINFO_URL
from tests.support.loopback import loopback_server
from tests.support.settings import FRAMEIO_OAUTH, OLD_TEST_KEY, TEST_KEY

API = "https://api.frame.io/v2/me"
# Made at import, so no test's source lines (which a report shows around each frame) contain
# them; read through this global, so no test frame holds them in a local either.
SECRET = {
    label: f"{label}-{secrets.token_hex(8)}"
    for label in [
        "ENCRYPT",
        "SET",
        "PENDING",
        "GET",
        "KEY",
        "USERINFO",
        "REFRESH",
        "PARSE",
        "OLD",
        "NEW",
        "API",
        "DROPPED",
        "CODE",
    ]
}


def report_of(action: Callable[[], Any]) -> str:
    """The HTML of the error e-mail for the exception ``action`` raises."""
    try:
        action()
    except Exception:
        exc_info = sys.exc_info()
    else:
        raise AssertionError("the action raised nothing")
    request = RequestFactory().get("/somewhere/")
    return ExceptionReporter(request, *exc_info, is_email=True).get_traceback_html()


def failing_encrypt(*args: Any, **kwargs: Any) -> bytes:
    raise RuntimeError("encryption failed")


def test_a_failure_inside_encrypt_does_not_show_the_plaintext() -> None:
    def encrypt() -> None:
        with mock.patch.object(AESGCM, "encrypt", failing_encrypt):
            get_cipher().encrypt(SECRET["ENCRYPT"], b"aad")

    assert SECRET["ENCRYPT"] not in report_of(encrypt)


def test_a_report_still_shows_frame_locals_that_are_not_secret() -> None:
    # The check above means something only if the report renders frame locals at all.
    def boom() -> None:
        harmless_local = "VISIBLE-LOCAL"
        raise RuntimeError(harmless_local)

    assert "VISIBLE-LOCAL" in report_of(boom)


@pytest.mark.django_db
def test_setting_a_token_when_encryption_fails_does_not_show_it(user: Any, make_token: Any) -> None:
    token = make_token(user)

    def set_token() -> None:
        with mock.patch.object(AESGCM, "encrypt", failing_encrypt):
            token.access_token = SECRET["SET"]

    assert SECRET["SET"] not in report_of(set_token)


@pytest.mark.django_db
def test_saving_a_pending_token_when_encryption_fails_does_not_show_it(user: Any) -> None:
    token = OAuthToken(provider_user_id="p1", expires_at=timezone.now())
    token.access_token = SECRET["PENDING"]
    token.user = user

    def save() -> None:
        with mock.patch.object(AESGCM, "encrypt", failing_encrypt):
            token.save()

    assert SECRET["PENDING"] not in report_of(save)


@pytest.mark.django_db
def test_a_failure_after_decryption_does_not_show_the_plaintext(user: Any, make_token: Any) -> None:
    make_token(user)
    token = OAuthToken.objects.get(user=user)

    def read() -> None:
        # Bytes that are not UTF-8: decryption "succeeds", decoding the plaintext fails.
        with mock.patch.object(AESGCM, "decrypt", return_value=SECRET["GET"].encode() + b"\xff"):
            token.access_token  # noqa: B018

    assert SECRET["GET"] not in report_of(read)


def test_a_misconfigured_key_does_not_show_the_key() -> None:
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [SECRET["KEY"]]}):
        html = report_of(get_cipher)
    assert SECRET["KEY"] not in html


def test_a_failed_user_info_call_does_not_show_the_bearer(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.get(USERINFO_URL, body=requests.ConnectionError("down"))
    assert SECRET["USERINFO"] not in report_of(lambda: provider.fetch_userinfo(SECRET["USERINFO"]))


def test_a_failed_refresh_call_does_not_show_the_refresh_token(
    provider_http: responses.RequestsMock,
) -> None:
    provider_http.post(TOKEN_URL, body=RuntimeError("bug"))
    assert SECRET["REFRESH"] not in report_of(lambda: provider.refresh_grant(SECRET["REFRESH"]))


def test_an_unusable_token_answer_does_not_show_its_refresh_token() -> None:
    def parse() -> None:
        provider.parse_token_payload({"access_token": None, "refresh_token": SECRET["PARSE"]})

    assert SECRET["PARSE"] not in report_of(parse)


@pytest.mark.django_db
def test_a_failed_retry_after_a_401_does_not_show_either_bearer(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token=SECRET["OLD"])
    provider_http.get(API, status=401)
    provider_http.post(TOKEN_URL, json={"access_token": SECRET["NEW"], "expires_in": 3600})
    # The retry fails in the transport, below the session and the auth hook.
    provider_http.get(API, body=requests.ConnectionError("down"))
    html = report_of(lambda: session_for(user).get(API))
    assert SECRET["OLD"] not in html
    assert SECRET["NEW"] not in html


@pytest.mark.django_db
def test_a_failed_api_call_does_not_show_the_bearer(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token=SECRET["API"])
    provider_http.get(API, body=RuntimeError("transport bug"))
    assert SECRET["API"] not in report_of(lambda: session_for(user).get(API))


@pytest.fixture
def hanging_up_api() -> Iterator[str]:
    """A loopback "API" that reads each request and closes the connection unanswered, so
    the failure is raised inside urllib3, whose frames hold the request headers."""

    def hang_up(conn: socket.socket, stop: threading.Event) -> None:
        conn.recv(65536)

    with loopback_server(hang_up) as url:
        yield url


@pytest.mark.django_db
def test_a_dropped_api_connection_does_not_show_the_bearer(
    user: Any, make_token: Any, hanging_up_api: str
) -> None:
    make_token(user, access_token=SECRET["DROPPED"])
    url = f"{hanging_up_api}/v2/me"

    def call() -> None:
        session_for(user).get(url, timeout=5)

    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "USERINFO_URL": url}):
        html = report_of(call)
    assert "ConnectionError" in html
    assert SECRET["DROPPED"] not in html


@pytest.mark.django_db
def test_a_callback_that_cannot_encrypt_does_not_put_the_new_tokens_in_the_500_report(
    client: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    client.force_login(user)
    provider_http.post(
        TOKEN_URL,
        json={"access_token": "AT-LEAKME-123", "refresh_token": "RT-LEAKME-456", "expires_in": 60},
    )
    provider_http.get(USERINFO_URL, json={"id": "fio-9", "email": "a@x.example"})
    state = start(client)
    captured: list[Any] = []

    def grab(sender: Any, request: Any, **kwargs: Any) -> None:
        captured.append((request, sys.exc_info()))

    got_request_exception.connect(grab, weak=False, dispatch_uid="test_error_reports")
    client.raise_request_exception = False
    try:
        with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": ["bad"]}):
            response = client.get("/frameio/callback/", {"state": state, "code": SECRET["CODE"]})
    finally:
        got_request_exception.disconnect(dispatch_uid="test_error_reports")
    assert response.status_code == 500
    request, exc_info = captured[0]
    reporter = ExceptionReporter(request, *exc_info, is_email=True)
    html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
    assert "LEAKME" not in html
    # The URL's one-time code and state: not in the request URL, the GET section, META or
    # any frame's request, in the HTML or the plain-text report.
    for report in (html, text):
        assert SECRET["CODE"] not in report
        assert state not in report
    assert "code=********" in text


def test_a_failure_inside_a_disconnect_does_not_show_the_tokens(user: Any, make_token: Any) -> None:
    make_token(user, access_token="AT-disconnect-secret", refresh_token="RT-disconnect-secret")
    # Deep in the HTTP call, where the form with the refresh token is.
    with mock.patch.object(
        requests.adapters.HTTPAdapter, "send", side_effect=RuntimeError("a bug")
    ):
        html = report_of(lambda: services.disconnect(user))
    assert "AT-disconnect-secret" not in html
    assert "RT-disconnect-secret" not in html


def test_a_failure_inside_a_key_rotation_does_not_show_the_tokens(
    user: Any, make_token: Any
) -> None:
    make_token(user, access_token="AT-rotation-secret", refresh_token="RT-rotation-secret")
    new_first = {**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [OLD_TEST_KEY, TEST_KEY]}
    with (
        override_settings(FRAMEIO_OAUTH=new_first),
        mock.patch.object(QuerySet, "bulk_update", side_effect=RuntimeError("a bug")),
    ):
        html = report_of(services.rotate_encryption_keys)
    assert "AT-rotation-secret" not in html
    assert "RT-rotation-secret" not in html


def test_a_failure_replacing_a_rejected_token_does_not_show_it(user: Any, make_token: Any) -> None:
    make_token(user, access_token="AT-rejected-secret")
    with mock.patch.object(QuerySet, "first", side_effect=RuntimeError("a bug")):
        html = report_of(
            lambda: services.replace_rejected_token(
                user, OAuthToken.objects.get(user=user).access_token
            )
        )
    assert "AT-rejected-secret" not in html
