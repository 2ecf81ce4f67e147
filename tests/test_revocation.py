"""Disconnecting while the provider is down: the row stays, disconnected (status ``revoked``),
until a sweep gets the revocation through. The provider is mocked here; test_e2e.py does the
same against the django-oauth-toolkit stand-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock
from urllib.parse import parse_qs

import pytest
import responses
import time_machine
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone

from frameio_oauth import provider, services, signals
from frameio_oauth.exceptions import GrantRefused, NotConnected
from frameio_oauth.models import OAuthToken
from tests.support.frameio import REVOKE_URL, TOKEN_URL, revoked_tokens
from tests.support.pg_sessions import other_session
from tests.support.settings import FRAMEIO_OAUTH, OLD_TEST_KEY
from tests.support.signals import Received

pytestmark = pytest.mark.django_db


@pytest.fixture
def announced() -> Iterator[list[dict[str, Any]]]:
    """Every token_revoked sent during the test."""
    with Received(signals.token_revoked) as got:
        yield got.calls


@pytest.fixture
def pending(user: Any, make_token: Any, provider_http: responses.RequestsMock) -> OAuthToken:
    """A disconnect that met a provider outage."""
    token = make_token(user)
    provider_http.post(REVOKE_URL, status=503)
    result = services.disconnect(user)
    assert result.pending and not result.revoked_at_provider
    provider_http.reset()
    return OAuthToken.objects.get(pk=token.pk)


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
        failure_count=services.MAX_REVOCATION_ATTEMPTS - 1
    )
    provider_http.post(REVOKE_URL, status=503)
    with time_machine.travel(pending.next_refresh_at + timedelta(seconds=1)):
        assert services.retry_due_revocations() == 1
    assert not OAuthToken.objects.filter(pk=pending.pk).exists()
    assert [call["revoked_at_provider"] for call in announced] == [False]


def test_a_disconnected_identity_no_longer_signs_its_old_user_in(
    pending: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(REVOKE_URL, body="")
    info = provider.UserInfo(id=pending.provider_user_id, email="alice@frame.example")
    with pytest.raises(GrantRefused) as refused:
        services.connect_or_sign_in(None, NEW_GRANT, info)
    assert refused.value.reason is GrantRefused.Reason.NO_ACCOUNT


NEW_GRANT = provider.TokenResponse(
    access_token="AT-new", token_type="bearer", expires_in=3600, refresh_token="RT-new"
)


def test_reconnecting_the_same_account_replaces_the_pending_row_without_revoking_it(
    user: Any,
    pending: OAuthToken,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # A provider that revokes every grant of a user and client at once would cut the grant
    # just issued; the old one gives this client nothing the new one does not.
    info = provider.UserInfo(id=pending.provider_user_id, email="alice@frame.example")
    with django_capture_on_commit_callbacks(execute=True):
        stored = services.store_grant(user, NEW_GRANT, info)
    assert revoked_tokens(provider_http) == []
    assert stored.status == OAuthToken.Status.ACTIVE
    assert services.get_access_token(user) == "AT-new"
    assert [call["revoked_at_provider"] for call in announced] == [False]


def test_connecting_another_account_revokes_the_pending_grant_once_more(
    user: Any,
    pending: OAuthToken,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    provider_http.post(REVOKE_URL, body="")
    info = provider.UserInfo(id="fio-another-account", email="alice@elsewhere.example")
    with django_capture_on_commit_callbacks(execute=True):
        services.store_grant(user, NEW_GRANT, info)
    assert revoked_tokens(provider_http) == [f"refresh-{user.pk}-secret"]
    assert OAuthToken.objects.get(user=user).provider_user_id == "fio-another-account"
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


def test_refresh_failures_before_a_disconnect_do_not_use_up_its_attempts(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user, failure_count=services.MAX_REVOCATION_ATTEMPTS + 10)
    provider_http.post(REVOKE_URL, status=503)
    assert services.disconnect(user).pending
    kept = OAuthToken.objects.get(pk=token.pk)
    assert kept.failure_count == 1
    # The first retry comes within the first backoff step, not the 30-minute cap.
    assert kept.next_refresh_at <= timezone.now() + timedelta(seconds=31)


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 401, "json": {"error": "invalid_client"}},
        {"status": 403, "body": "<html>forbidden</html>"},
    ],
    ids=["wrong-client-secret", "html-403"],
)
def test_a_refusal_an_operator_can_fix_keeps_the_grant_for_a_retry(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, answer: dict[str, Any]
) -> None:
    make_token(user)
    provider_http.post(REVOKE_URL, **answer)
    result = services.disconnect(user)
    assert result.pending
    assert OAuthToken.objects.get(user=user).status == OAuthToken.Status.REVOKED


def test_a_key_missing_at_disconnect_keeps_the_grant_until_it_is_back(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    elsewhere = {**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [OLD_TEST_KEY]}
    with override_settings(FRAMEIO_OAUTH=elsewhere):
        assert services.disconnect(user).pending
    assert len(provider_http.calls) == 0
    provider_http.post(REVOKE_URL, body="")
    kept = OAuthToken.objects.get(pk=token.pk)
    with time_machine.travel(kept.next_refresh_at + timedelta(seconds=1)):
        assert services.retry_due_revocations() == 1
    assert revoked_tokens(provider_http) == [f"refresh-{user.pk}-secret"]


@pytest.mark.parametrize(
    ("error", "status"),
    [("unsupported_token_type", 400), ("invalid_grant", 400)],
    ids=["server-cannot-revoke-it", "already-dead-there"],
)
def test_a_refusal_no_retry_can_change_ends_the_disconnect_at_once(
    user: Any, make_token: Any, provider_http: responses.RequestsMock, error: str, status: int
) -> None:
    make_token(user)
    provider_http.post(REVOKE_URL, status=status, json={"error": error})
    result = services.disconnect(user)
    assert not result.pending and not result.revoked_at_provider
    assert not OAuthToken.objects.filter(user=user).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_reconnect_racing_a_stalled_disconnect_still_retires_the_old_grant(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # The reconnect must wait for the disconnect's row lock and then see the row as the
    # pending revocation it has become, not overwrite it unseen.
    make_token(user)
    revoking, release = threading.Event(), threading.Event()
    answers = iter([503, 200])

    def revoke(request: Any) -> tuple[int, dict[str, str], str]:
        revoking.set()
        release.wait(10)
        return next(answers), {}, ""

    provider_http.add_callback(responses.POST, REVOKE_URL, callback=revoke)
    results: dict[str, Any] = {}

    def in_thread(name: str, work: Any) -> threading.Thread:
        def run() -> None:
            try:
                results[name] = work()
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    disconnecting = in_thread("disconnect", lambda: services.disconnect(user))
    assert revoking.wait(10)
    other_account = provider.UserInfo(id="fio-another-account")
    reconnecting = in_thread("store", lambda: services.store_grant(user, NEW_GRANT, other_account))
    time.sleep(0.3)  # the reconnect is now waiting for the row lock
    release.set()
    disconnecting.join(10)
    reconnecting.join(10)
    assert results["disconnect"].pending
    assert revoked_tokens(provider_http) == [f"refresh-{user.pk}-secret"] * 2
    row = OAuthToken.objects.get(user=user)
    assert (row.status, row.provider_user_id) == (OAuthToken.Status.ACTIVE, "fio-another-account")


def test_a_raising_receiver_does_not_stop_the_deferred_revocations(
    pending: OAuthToken, other_user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(other_user)
    provider_http.post(REVOKE_URL, status=503)
    assert services.disconnect(other_user).pending  # two revocations waiting now
    provider_http.reset()
    provider_http.post(REVOKE_URL, body="")

    def fail(**kwargs: Any) -> None:
        raise RuntimeError("a receiver's bug")

    signals.token_revoked.connect(fail, weak=False, dispatch_uid="test-raising")
    try:
        with time_machine.travel(timezone.now() + timedelta(hours=1)):
            assert services.retry_due_revocations() == 2
    finally:
        signals.token_revoked.disconnect(dispatch_uid="test-raising")
    assert not OAuthToken.objects.exists()


# --- connecting another Frame.io account ------------------------------------------------------


def connect(user: Any, account: str, capture: Any) -> OAuthToken:
    """The user completes the flow as the Frame.io account ``account``."""
    with capture(execute=True):
        return services.store_grant(user, NEW_GRANT, provider.UserInfo(id=account))


def test_connecting_another_account_revokes_the_grant_it_replaces(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_token(user, provider_user_id="fio-OLD")
    provider_http.post(REVOKE_URL, body="")
    connect(user, "fio-NEW", django_capture_on_commit_callbacks)
    assert revoked_tokens(provider_http) == [f"refresh-{user.pk}-secret"]
    row = OAuthToken.objects.get(user=user)
    assert (row.provider_user_id, row.refresh_token) == ("fio-NEW", "RT-new")
    assert [(c["provider_user_id"], c["revoked_at_provider"]) for c in announced] == [
        ("fio-OLD", True)
    ]


def test_a_replaced_grant_the_provider_cannot_revoke_is_logged_and_the_new_one_kept(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_token(user, provider_user_id="fio-OLD")
    provider_http.post(REVOKE_URL, status=503)
    connect(user, "fio-NEW", django_capture_on_commit_callbacks)
    assert services.get_access_token(user) == "AT-new"
    assert any(
        r.levelname == "WARNING" and "could not be revoked" in r.getMessage()
        for r in caplog.records
    )
    assert f"refresh-{user.pk}-secret" not in caplog.text
    assert [c["revoked_at_provider"] for c in announced] == [False]


def test_reconnecting_the_same_account_does_not_revoke_the_grant_it_replaces(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_token(user, provider_user_id="fio-SAME")
    connect(user, "fio-SAME", django_capture_on_commit_callbacks)
    assert revoked_tokens(provider_http) == []
    assert announced == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_replaced_grant_is_revoked_after_the_commit_outside_the_row_lock(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user, provider_user_id="fio-OLD")
    seen: list[str] = []

    def revoke(request: Any) -> tuple[int, dict[str, str], str]:
        with other_session() as other:
            row = other.execute(
                f"SELECT provider_user_id FROM {OAuthToken._meta.db_table} "
                "WHERE id = %s FOR UPDATE NOWAIT",
                [token.pk],
            ).fetchone()
            seen.append(row[0])
        return 200, {}, ""

    provider_http.add_callback(responses.POST, REVOKE_URL, callback=revoke)
    # What the callback view calls: store_grant inside a transaction of its own.
    services.connect_or_sign_in(user, NEW_GRANT, provider.UserInfo(id="fio-NEW"))
    assert seen == ["fio-NEW"]


def test_a_disconnect_inside_a_transaction_that_rolls_back_announces_nothing(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_token(user)
    provider_http.post(REVOKE_URL, body="")
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            services.disconnect(user)
            raise RuntimeError("the caller's transaction fails after the disconnect")
    assert announced == []


def test_a_disconnect_inside_a_transaction_announces_once_it_commits(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_token(user)
    provider_http.post(REVOKE_URL, body="")
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            services.disconnect(user)
            assert announced == []
    assert [c["revoked_at_provider"] for c in announced] == [True]


def test_a_failing_revocation_of_a_replaced_grant_still_announces_the_new_one(
    user: Any,
    make_token: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_token(user, provider_user_id="fio-OLD")
    obtained: list[dict[str, Any]] = []
    signals.token_obtained.connect(
        lambda **kwargs: obtained.append(kwargs), weak=False, dispatch_uid="test-obtained"
    )
    try:
        with mock.patch.object(provider, "revoke_grant", side_effect=RuntimeError("a bug")):
            connect(user, "fio-NEW", django_capture_on_commit_callbacks)
    finally:
        signals.token_obtained.disconnect(dispatch_uid="test-obtained")
    assert [kw["created"] for kw in obtained] == [False]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_disconnect_inside_a_transaction_survives_a_short_idle_in_transaction_limit(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user)
    connection = connections["default"]
    connection.close()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET idle_in_transaction_session_timeout = 300")

        def slow(request: Any) -> tuple[int, dict[str, str], str]:
            time.sleep(0.8)
            return 200, {}, ""

        provider_http.add_callback(responses.POST, REVOKE_URL, callback=slow)
        # As the admin's delete view does.
        with transaction.atomic():
            result = services.disconnect(user)
        assert result.revoked_at_provider
        assert not OAuthToken.objects.filter(user=user).exists()
    finally:
        connection.close()


def test_connecting_another_account_while_frameio_is_still_down_drops_the_pending_grant(
    user: Any,
    pending: OAuthToken,
    provider_http: responses.RequestsMock,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The user's row holds the new grant now: the old one is left to expire at Frame.io.
    provider_http.post(REVOKE_URL, status=503)
    info = provider.UserInfo(id="fio-another-account", email="alice@elsewhere.example")
    with django_capture_on_commit_callbacks(execute=True):
        services.store_grant(user, NEW_GRANT, info)
    assert revoked_tokens(provider_http) == [f"refresh-{user.pk}-secret"]
    assert [row.provider_user_id for row in OAuthToken.objects.all()] == ["fio-another-account"]
    assert [call["revoked_at_provider"] for call in announced] == [False]
    assert "replaced before its revocation went through" in caplog.text


def test_disconnecting_a_grant_without_a_refresh_token_revokes_its_access_token(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # A grant issued without the offline scope: its access token is all there is to end.
    make_token(user, refresh_token=None)
    provider_http.post(REVOKE_URL, body="")
    assert services.disconnect(user).revoked_at_provider
    [call] = provider_http.calls
    form = parse_qs(str(call.request.body))
    assert (form["token"], form["token_type_hint"]) == (
        [f"access-{user.pk}-secret"],
        ["access_token"],
    )
    assert not OAuthToken.objects.filter(user=user).exists()
