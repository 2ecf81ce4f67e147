"""The refresh rule, unit by unit, with the provider mocked: on demand, one refresh, its
scope, the rows it must not refresh, and what it stores of the answer. Lock behaviour under
real concurrency is in test_locking.py (PostgreSQL), a save that fails in
test_refresh_recovery.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
import time_machine
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from frameio_oauth import services, signals
from frameio_oauth.exceptions import (
    NotConnected,
    ProviderError,
    ProviderUnavailable,
    ReauthorizationRequired,
    RefreshInsideTransaction,
)
from frameio_oauth.models import OAuthToken
from tests.support.callback import TOKENS
from tests.support.frameio import NEW, TOKEN_URL
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.signals import Received
from tests.support.tokens import MISSING_ID, stored

pytestmark = pytest.mark.django_db


# --- on demand: get_access_token --------------------------------------------------------------


def test_a_fresh_token_costs_one_query_and_no_provider_call(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, access_token="fresh")
    with CaptureQueriesContext(connection) as queries:
        assert services.get_access_token(user) == "fresh"
    assert len(queries) == 1
    assert len(provider_http.calls) == 0


def test_a_due_token_is_refreshed_on_demand(
    user: Any, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    assert services.get_access_token(user) == "AT-new"
    assert stored(due_token).refresh_token == "RT-new"


def test_a_user_without_a_token_is_not_connected(user: Any) -> None:
    with pytest.raises(NotConnected):
        services.get_access_token(user)


def test_a_token_needing_reauthorization_raises(user: Any, make_token: Any) -> None:
    make_token(user, status=OAuthToken.Status.REAUTH_REQUIRED)
    with pytest.raises(ReauthorizationRequired):
        services.get_access_token(user)


def test_an_outage_still_hands_out_an_unexpired_token(
    user: Any, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=503)
    assert services.get_access_token(user) == due_token.access_token


def test_an_outage_with_an_expired_token_raises(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    make_token(user, expires_at=timezone.now() - timedelta(seconds=1))
    provider_http.post(TOKEN_URL, status=503)
    with pytest.raises(ProviderUnavailable):
        services.get_access_token(user)


def test_an_outage_costs_one_provider_call_until_the_backoff_time_comes(
    user: Any, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=503, headers={"Retry-After": "600"})
    for _ in range(5):
        assert services.get_access_token(user) == due_token.access_token
    assert len(provider_http.calls) == 1


def test_an_on_demand_call_tries_again_once_the_backoff_time_has_come(
    user: Any, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=503)
    services.get_access_token(user)
    provider_http.post(TOKEN_URL, json=NEW)
    # Within 30 s: the token, which has 2 minutes to live, is still unexpired.
    with time_machine.travel(stored(due_token).next_refresh_at + timedelta(seconds=1)):
        assert services.get_access_token(user) == "AT-new"


def test_an_expired_token_waiting_out_its_backoff_calls_nobody_and_says_when(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # Each caller used to call the provider again, and pile up failures, during an outage.
    now = timezone.now()
    retry_at = now + timedelta(seconds=8)
    make_token(
        user, expires_at=now - timedelta(seconds=1), next_refresh_at=retry_at, failure_count=3
    )
    for _ in range(3):
        with pytest.raises(ProviderUnavailable) as waiting:
            services.get_access_token(user)
        assert waiting.value.retry_at == retry_at
    assert len(provider_http.calls) == 0


@pytest.mark.parametrize(
    ("retry_after", "least", "most"), [(None, 0, 11), (600, 599.9, 601)], ids=["plain", "429"]
)
def test_an_expired_tokens_failed_refresh_is_tried_again_within_seconds_unless_told_to_wait(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    retry_after: int | None,
    least: float,
    most: float,
) -> None:
    make_token(user, expires_at=timezone.now() - timedelta(seconds=1), failure_count=6)
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    provider_http.post(TOKEN_URL, status=429 if retry_after else 503, headers=headers)
    with pytest.raises(ProviderUnavailable):
        services.get_access_token(user)
    row = OAuthToken.objects.get(user=user)
    assert row.next_refresh_at is not None
    wait = (row.next_refresh_at - row.updated_at).total_seconds()
    assert least <= wait <= most


def test_a_token_the_api_rejected_is_refreshed_even_while_backing_off(
    user: Any, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    OAuthToken.objects.filter(pk=due_token.pk).update(
        failure_count=1, next_refresh_at=timezone.now() + timedelta(minutes=10)
    )
    provider_http.post(TOKEN_URL, json=NEW)
    assert services.replace_rejected_token(user, due_token.access_token) == "AT-new"


def test_inside_a_callers_transaction_a_due_but_valid_token_is_handed_out_unrefreshed(
    user: Any, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    with transaction.atomic():
        assert services.get_access_token(user) == due_token.access_token
    assert len(provider_http.calls) == 0


def test_inside_a_callers_transaction_a_refresh_is_refused(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user, expires_at=timezone.now() - timedelta(seconds=1))
    with transaction.atomic(), pytest.raises(RefreshInsideTransaction):
        services.get_access_token(user)
    with transaction.atomic(), pytest.raises(RefreshInsideTransaction):
        services.refresh(token.pk, force=True)
    assert len(provider_http.calls) == 0


# --- one refresh ------------------------------------------------------------------------------


def test_refresh_stores_everything_in_one_commit_and_signals(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    with Received(signals.token_refreshed) as got, time_machine.travel(timezone.now(), tick=False):
        services.refresh(due_token.pk)
        now = timezone.now()
    token = stored(due_token)
    assert (token.access_token, token.refresh_token) == ("AT-new", "RT-new")
    assert token.expires_at == now + timedelta(seconds=3600)
    assert token.last_refreshed_at == now
    # Expiry - margin - jitter (up to the margin): between 50 and 55 minutes from now.
    assert now + timedelta(minutes=50) <= token.next_refresh_at <= now + timedelta(minutes=55)
    assert [call["rotated"] for call in got.calls] == [True]


def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={"access_token": "AT-new", "expires_in": 3600})
    services.refresh(due_token.pk)
    assert stored(due_token).refresh_token == due_token.refresh_token


def test_a_fresh_token_is_not_refreshed_unless_forced(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(TOKEN_URL, json=NEW)
    assert services.refresh(token.pk).access_token == token.access_token
    assert len(provider_http.calls) == 0
    assert services.refresh(token.pk, force=True).access_token == "AT-new"


def test_invalid_grant_marks_reauth_required_signals_and_never_retries(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with Received(signals.reauthorization_required) as got:
        with pytest.raises(ReauthorizationRequired):
            services.refresh(due_token.pk)
    token = stored(due_token)
    assert token.status == OAuthToken.Status.REAUTH_REQUIRED
    assert token.next_refresh_at is None
    assert token.refresh_token == due_token.refresh_token
    assert len(got.calls) == 1
    assert services.refresh_due().as_dict() == {
        "refreshed": 0,
        "skipped": 0,
        "failed": 0,
        "reauth": 0,
        "revoked": 0,
        "revocations_failed": 0,
    }
    assert len(provider_http.calls) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 503, "body": "busy"},
        {"status": 502, "body": "<html>bad gateway</html>", "content_type": "text/html"},
        {"body": requests.ReadTimeout()},
    ],
    ids=["503", "html-502", "timeout"],
)
def test_a_transient_failure_keeps_the_token_and_backs_off(
    due_token: OAuthToken, provider_http: responses.RequestsMock, answer: dict[str, Any]
) -> None:
    provider_http.post(TOKEN_URL, **answer)
    with Received(signals.refresh_failed) as got:
        with pytest.raises(ProviderUnavailable):
            services.refresh(due_token.pk)
    token = stored(due_token)
    assert token.status == OAuthToken.Status.ACTIVE
    assert (token.access_token, token.refresh_token) == (
        due_token.access_token,
        due_token.refresh_token,
    )
    assert token.failure_count == 1
    assert token.next_refresh_at > timezone.now()
    assert got.calls[0]["retry_at"] == token.next_refresh_at


def test_a_configuration_error_keeps_the_token(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    with pytest.raises(ProviderError):
        services.refresh(due_token.pk)
    token = stored(due_token)
    assert token.access_token == due_token.access_token
    assert "invalid_client" in token.last_error


def test_success_after_failures_resets_the_count(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    OAuthToken.objects.filter(pk=due_token.pk).update(failure_count=3, last_error="x")
    provider_http.post(TOKEN_URL, json=NEW)
    services.refresh(due_token.pk)
    token = stored(due_token)
    assert (token.failure_count, token.last_error) == (0, "")


def test_a_second_fanned_out_task_for_a_row_that_just_failed_waits_for_the_backoff(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=503)
    assert services.refresh_if_due(due_token.pk) is services.Outcome.FAILED
    assert services.refresh_if_due(due_token.pk) is services.Outcome.NOT_DUE
    assert len(provider_http.calls) == 1


def test_a_refresh_the_provider_refuses_is_logged_as_an_error_in_its_words(
    due_token: OAuthToken, provider_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    refusal = {"error": "invalid_scope", "error_description": "scope profile is not granted"}
    provider_http.post(TOKEN_URL, status=400, json=refusal)
    with Received(signals.refresh_failed) as failed, pytest.raises(ProviderError):
        services.refresh(due_token.pk)
    row = stored(due_token)
    assert "invalid_scope: scope profile is not granted" in row.last_error
    assert row.refresh_token == due_token.refresh_token
    assert [call["error"].code for call in failed.calls] == ["invalid_scope"]
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "refused" in r.getMessage()]
    assert len(errors) == 1
    assert "scope profile is not granted" in errors[0].getMessage()


# --- the scope a refresh asks for -------------------------------------------------------------


def refreshed_scope(
    token: OAuthToken, provider_http: responses.RequestsMock, **conf: Any
) -> str | None:
    """The scope parameter of the refresh that ``token`` gets under these settings (None when
    the refresh sends none)."""
    provider_http.post(TOKEN_URL, json=NEW)
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, **conf}):
        services.refresh(token.pk, force=True)
    body = provider_http.calls[-1].request.body
    return parse_qs(body).get("scope", [None])[0]


DEFAULT_SCOPES = ["account.read", "offline"]


@pytest.mark.parametrize(
    ("granted", "configured", "sent"),
    [
        # RFC 6749 §6: never more than was granted, so a scope added since is not asked for.
        ("account.read offline", [*DEFAULT_SCOPES, "asset.create"], "account.read offline"),
        # A scope removed from settings is dropped.
        ("account.read asset.read offline", DEFAULT_SCOPES, "account.read offline"),
        # The offline scope only if it was granted, never because the preset names it...
        ("account.read", DEFAULT_SCOPES, "account.read"),
        ("openid offline_access", ["openid", "offline_access"], "openid offline_access"),
        # ...and whenever it was: a provider would otherwise stop rotating refresh tokens.
        ("account.read offline", ["account.read"], "account.read offline"),
        # Nothing configured is recorded as granted: the grant as it stands, no scope sent.
        ("asset.read", DEFAULT_SCOPES, None),
        ("", [*DEFAULT_SCOPES, "asset.create"], None),
        ("offline", DEFAULT_SCOPES, None),
    ],
    ids=[
        "scope-added-to-settings-since",
        "scope-removed-from-settings",
        "offline-not-granted",
        "another-offline-spelling-granted",
        "offline-left-settings",
        "echo-names-no-configured-scope",
        "no-recorded-scope",
        "only-offline-recorded",
    ],
)
def test_a_refresh_asks_for_the_configured_scopes_the_grant_holds_and_offline_if_granted(
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    granted: str,
    configured: list[str],
    sent: str | None,
) -> None:
    token = make_token(user, scope=granted)
    assert refreshed_scope(token, provider_http, SCOPES=configured) == sent


def test_adobe_scopes_are_matched_and_sent_comma_separated(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user, scope="openid,offline_access,email")
    sent = refreshed_scope(
        token, provider_http, PROVIDER="adobe-ims", SCOPES=None, TOKEN_URL=TOKEN_URL
    )
    assert sent == "openid,email,offline_access"


# --- rows a refresh must not refresh: each ends without a provider call -----------------------


@pytest.fixture
def reauth_signals() -> Iterator[list[dict[str, Any]]]:
    """Every reauthorization_required sent during the test."""
    with Received(signals.reauthorization_required) as got:
        yield got.calls


def test_refreshing_a_token_id_that_does_not_exist_raises_not_connected(
    provider_http: responses.RequestsMock,
) -> None:
    with pytest.raises(NotConnected, match="does not exist"):
        services.refresh(MISSING_ID, force=True)
    assert len(provider_http.calls) == 0


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


# --- what a refresh stores of the provider's answer -------------------------------------------


def test_a_scope_sent_as_a_list_is_stored_joined_as_the_preset_writes_scopes(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={**NEW, "scope": ["account.read", "offline", "asset.read"]})
    services.refresh(due_token.pk)
    # The legacy preset's scopes are space-separated.
    assert OAuthToken.objects.get(pk=due_token.pk).scope == "account.read offline asset.read"


def test_a_scope_that_is_neither_text_nor_a_list_keeps_the_stored_scope_and_the_new_tokens(
    due_token: OAuthToken, provider_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    provider_http.post(TOKEN_URL, json={**NEW, "scope": {"granted": 42}})
    services.refresh(due_token.pk)
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert (row.access_token, row.refresh_token, row.scope) == (
        "AT-new",
        "RT-new",
        due_token.scope,
    )
    assert "unusable scope (dict): keeping the stored scope" in caplog.text


def test_a_refresh_answer_with_an_overlong_scope_keeps_its_tokens_and_the_stored_scope(
    due_token: OAuthToken, provider_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    provider_http.post(TOKEN_URL, json={**TOKENS, "scope": "account.read " * 100})
    services.refresh(due_token.pk)
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert (row.access_token, row.refresh_token) == ("AT-1", "RT-1")
    assert row.scope == due_token.scope
    assert "scope the provider sent cannot be stored" in caplog.text


def test_a_refresh_answer_with_an_unusable_token_type_is_stored_as_bearer(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={**TOKENS, "token_type": "mac\x00"})
    services.refresh(due_token.pk)
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert (row.refresh_token, row.token_type) == ("RT-1", "Bearer")


def test_a_rotated_refresh_token_in_a_doubtful_answer_is_stored(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={**NEW, "expires_in": 3599.5})
    services.refresh(due_token.pk)
    row = stored(due_token)
    assert (row.access_token, row.refresh_token, row.failure_count) == ("AT-new", "RT-new", 0)


def test_an_empty_refresh_token_in_a_refresh_answer_keeps_the_stored_one(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={"access_token": "AT-new", "refresh_token": ""})
    services.refresh(due_token.pk)
    row = stored(due_token)
    assert (row.access_token, row.refresh_token) == ("AT-new", due_token.refresh_token)


def test_an_echoed_refresh_token_never_reaches_last_error(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    echo = f"{due_token.refresh_token} is malformed"
    provider_http.post(
        TOKEN_URL, status=400, json={"error": "invalid_request", "error_description": echo}
    )
    with pytest.raises(ProviderError):
        services.refresh(due_token.pk)
    row = stored(due_token)
    assert due_token.refresh_token not in row.last_error
    assert "[redacted] is malformed" in row.last_error


def test_a_public_clients_refused_refresh_quotes_frameio_without_the_refresh_token(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    public = {key: value for key, value in FRAMEIO_OAUTH.items() if key != "CLIENT_SECRET"}
    spent = due_token.refresh_token
    provider_http.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_request", "error_description": f"malformed token {spent}"},
    )
    with override_settings(FRAMEIO_OAUTH=public), pytest.raises(ProviderError) as caught:
        services.refresh(due_token.pk)
    assert "invalid_request" in str(caught.value)
    assert "[redacted]" in str(caught.value)
    assert spent not in str(caught.value)
    assert spent not in OAuthToken.objects.get(pk=due_token.pk).last_error


def test_a_refresh_answer_whose_refresh_token_is_not_printable_ascii_ends_the_schedule(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    # The one presented may be spent already, and its successor cannot be used: the new access
    # token is kept until it expires, then the user connects again. Never the spent one.
    provider_http.post(TOKEN_URL, json={**TOKENS, "refresh_token": "RT-\ud800"})
    services.refresh(due_token.pk)
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert (row.access_token, row.refresh_token, row.next_refresh_at) == ("AT-1", None, None)


def test_a_refresh_answer_with_an_unusable_access_token_is_a_failure_recorded_on_the_row(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json={**TOKENS, "access_token": "AT-\u20ac"})
    with pytest.raises(ProviderError):
        services.refresh(due_token.pk)
    row = OAuthToken.objects.get(pk=due_token.pk)
    assert (row.failure_count, row.refresh_token) == (1, due_token.refresh_token)
