"""The refresh rule, unit by unit, with the provider mocked. Lock behaviour under real
concurrency is in test_locking.py (PostgreSQL)."""

from __future__ import annotations

import itertools
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

from frameio_oauth import provider, services, signals
from frameio_oauth.exceptions import (
    NotConnected,
    ProviderError,
    ProviderUnavailable,
    ReauthorizationRequired,
    RefreshInsideTransaction,
)
from frameio_oauth.models import OAuthToken
from tests.support.frameio import TOKEN_URL
from tests.support.settings import FRAMEIO_OAUTH

pytestmark = pytest.mark.django_db

NEW = {"access_token": "AT-new", "refresh_token": "RT-new", "expires_in": 3600}


@pytest.fixture
def due_token(user: Any, make_token: Any) -> OAuthToken:
    """A token inside the refresh margin: 2 minutes left, margin 5 minutes."""
    now = timezone.now()
    return make_token(
        user,
        expires_at=now + timedelta(minutes=2),
        next_refresh_at=now - timedelta(minutes=3),
    )


class Received:
    def __init__(self, signal: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self.signal = signal

    def __enter__(self) -> Received:
        self.signal.connect(self.receive, weak=False, dispatch_uid=id(self))
        return self

    def __exit__(self, *exc: object) -> None:
        self.signal.disconnect(dispatch_uid=id(self))

    def receive(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def stored(token: OAuthToken) -> OAuthToken:
    return OAuthToken.objects.get(pk=token.pk)


# --- get_access_token ------------------------------------------------------------------------


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


def test_an_expired_token_is_refreshed_on_demand_even_while_backing_off(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    now = timezone.now()
    make_token(
        user,
        expires_at=now - timedelta(seconds=1),
        next_refresh_at=now + timedelta(minutes=10),
        failure_count=3,
    )
    provider_http.post(TOKEN_URL, json=NEW)
    assert services.get_access_token(user) == "AT-new"


def test_a_token_the_api_rejected_is_refreshed_even_while_backing_off(
    user: Any, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    OAuthToken.objects.filter(pk=due_token.pk).update(
        failure_count=1, next_refresh_at=timezone.now() + timedelta(minutes=10)
    )
    provider_http.post(TOKEN_URL, json=NEW)
    assert services.replace_rejected_token(user, due_token.access_token) == "AT-new"


# --- refresh ---------------------------------------------------------------------------------


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


def test_backoff_grows_with_each_failure(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=503)
    delays = []
    for _ in range(4):
        with pytest.raises(ProviderUnavailable):
            services.refresh(due_token.pk, force=True)
        delays.append((stored(due_token).next_refresh_at - timezone.now()).total_seconds())
    # Full jitter in [d/2, d] with d = 30, 60, 120, 240 s.
    assert 14 <= delays[0] <= 30
    assert 119 <= delays[3] <= 240
    assert stored(due_token).failure_count == 4


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


# --- the sweep -------------------------------------------------------------------------------


def test_refresh_due_refreshes_every_due_token_once(
    make_due_tokens: Any, provider_http: responses.RequestsMock
) -> None:
    make_due_tokens(7)
    provider_http.post(TOKEN_URL, json=NEW)
    summary = services.refresh_due()
    assert summary.refreshed == 7
    assert len(provider_http.calls) == 7
    assert not OAuthToken.objects.due().exists()


def test_refresh_due_respects_its_limit(
    make_due_tokens: Any, provider_http: responses.RequestsMock
) -> None:
    make_due_tokens(5)
    provider_http.post(TOKEN_URL, json=NEW)
    assert services.refresh_due(limit=2).refreshed == 2
    assert OAuthToken.objects.due().count() == 3


def test_refresh_due_counts_failures_and_reauth(
    user: Any, other_user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    past = timezone.now() - timedelta(seconds=1)
    make_token(user, refresh_token="bad", next_refresh_at=past)
    make_token(other_user, refresh_token="flaky", next_refresh_at=past)

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        if "refresh_token=bad" in request.body:
            return 400, {}, '{"error": "invalid_grant"}'
        return 503, {}, "busy"

    provider_http.add_callback(responses.POST, TOKEN_URL, callback=answer)
    summary = services.refresh_due()
    assert (summary.reauth, summary.failed, summary.refreshed) == (1, 1, 0)


def test_a_second_fanned_out_task_for_a_row_that_just_failed_waits_for_the_backoff(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=503)
    assert services.refresh_if_due(due_token.pk) is services.Outcome.FAILED
    assert services.refresh_if_due(due_token.pk) is services.Outcome.NOT_DUE
    assert len(provider_http.calls) == 1


def test_an_undecryptable_row_is_recorded_and_the_sweep_goes_on(
    user: Any, other_user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    past = timezone.now() - timedelta(seconds=1)
    broken = make_token(user, next_refresh_at=past - timedelta(minutes=1))
    healthy = make_token(other_user, next_refresh_at=past)
    foreign = OAuthToken.objects.values_list("refresh_token_ciphertext", flat=True).get(
        pk=healthy.pk
    )
    OAuthToken.objects.filter(pk=broken.pk).update(refresh_token_ciphertext=foreign)
    provider_http.post(TOKEN_URL, json=NEW)
    summary = services.refresh_due()
    assert (summary.failed, summary.refreshed) == (1, 1)
    row = stored(broken)
    assert row.refresh_token_ciphertext == foreign  # kept for when the right key comes back
    assert "another row" in row.last_error
    assert row.next_refresh_at > timezone.now()
    assert stored(healthy).access_token == "AT-new"


def test_a_due_row_without_a_refresh_token_leaves_the_schedule(
    user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user, refresh_token=None, next_refresh_at=timezone.now())
    assert services.refresh_due().as_dict() == {
        "refreshed": 0,
        "skipped": 1,
        "failed": 0,
        "reauth": 0,
        "revoked": 0,
    }
    assert stored(token).next_refresh_at is None
    assert len(provider_http.calls) == 0


def test_due_ids_page_through_rows_that_share_one_refresh_time(
    django_user_model: Any, make_token: Any
) -> None:
    same = timezone.now() - timedelta(seconds=5)
    ids = {
        make_token(django_user_model.objects.create_user(f"u{i}"), next_refresh_at=same).pk
        for i in range(25)
    }
    listed = list(services.due_token_ids(batch_size=10))
    assert sorted(listed) == sorted(ids)
    assert listed == sorted(listed)


def due_a_microsecond_apart(django_user_model: Any, make_token: Any, count: int) -> list[int]:
    """Ids of ``count`` due tokens whose times step by one microsecond, two per step."""
    start = timezone.now() - timedelta(seconds=5)
    return [
        make_token(
            django_user_model.objects.create_user(f"u{i}"),
            next_refresh_at=start + timedelta(microseconds=i // 2),
        ).pk
        for i in range(count)
    ]


def test_due_ids_page_exactly_through_times_a_microsecond_apart(
    django_user_model: Any, make_token: Any
) -> None:
    # Each page's cursor is the last row's time: losing a microsecond on its way back into
    # the query would skip or repeat rows at every page boundary.
    ids = due_a_microsecond_apart(django_user_model, make_token, 23)
    # islice: a cursor that loses time would page the same rows forever.
    assert list(itertools.islice(services.due_token_ids(batch_size=3), 50)) == ids
    assert list(services.due_token_ids(limit=7, batch_size=3)) == ids[:7]


@pytest.mark.postgres
def test_due_ids_page_exactly_whatever_the_sessions_datestyle_and_time_zone(
    django_user_model: Any, make_token: Any
) -> None:
    ids = due_a_microsecond_apart(django_user_model, make_token, 11)
    with connection.cursor() as cursor:
        # Both undone with the test's transaction.
        cursor.execute("SET LOCAL DateStyle = 'SQL, DMY'")
        cursor.execute("SET LOCAL TIME ZONE 'Asia/Kolkata'")
    assert list(itertools.islice(services.due_token_ids(batch_size=3), 30)) == ids


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


def test_an_unexpected_error_is_recorded_and_the_sweep_goes_on(
    user: Any,
    other_user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    past = timezone.now() - timedelta(seconds=1)
    odd = make_token(user, refresh_token="odd", next_refresh_at=past - timedelta(minutes=1))
    make_token(other_user, next_refresh_at=past)
    real = provider.refresh_grant

    def flaky(refresh_token: str, **kwargs: Any) -> Any:
        if refresh_token == "odd":
            raise KeyError("a bug somewhere below us")
        return real(refresh_token, **kwargs)

    monkeypatch.setattr(provider, "refresh_grant", flaky)
    provider_http.post(TOKEN_URL, json=NEW)
    summary = services.refresh_due()
    assert (summary.failed, summary.refreshed) == (1, 1)
    row = stored(odd)
    assert row.refresh_token == "odd"
    assert "unexpected KeyError" in row.last_error
    assert row.next_refresh_at > timezone.now()


def test_a_huge_retry_after_does_not_park_the_token_for_years(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=429, headers={"Retry-After": "99999999999"}, body="")
    with pytest.raises(ProviderUnavailable):
        services.refresh(due_token.pk)
    assert stored(due_token).next_refresh_at <= timezone.now() + timedelta(
        seconds=services.BACKOFF_CAP + 5
    )


# --- signal receivers ------------------------------------------------------------------------


class Raising(Received):
    """A receiver with a bug."""

    def receive(self, **kwargs: Any) -> None:
        super().receive(**kwargs)
        raise RuntimeError("a receiver's bug")


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


def test_a_grant_whose_answer_names_no_scope_records_the_scope_asked_for(user: Any) -> None:
    # RFC 6749 §5.1: an answer without scope granted exactly what was asked for.
    tokens = provider.TokenResponse("AT", "Bearer", 3600, "RT", scope=None)
    services.store_grant(user, tokens, provider.UserInfo(id="fio-1"))
    assert OAuthToken.objects.get(user=user).scope == "account.read offline"


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
