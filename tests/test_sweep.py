"""The sweep (services.refresh_due): every due row once, one claimed row at a time, going on
past a row that fails; and the keyset pages of due ids the fanned-out sweep enqueues."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.db import connection
from django.utils import timezone

from frameio_oauth import provider, services
from frameio_oauth.models import OAuthToken
from tests.support.frameio import NEW, TOKEN_URL
from tests.support.tokens import stored

pytestmark = pytest.mark.django_db


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
        "revocations_failed": 0,
    }
    assert stored(token).next_refresh_at is None
    assert len(provider_http.calls) == 0


# --- due ids ----------------------------------------------------------------------------------


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
