"""How the stored tokens stand: services.token_status and manage.py frameio_oauth_status."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from frameio_oauth import services
from frameio_oauth.crypto import decode_key, key_id
from frameio_oauth.models import OAuthToken
from tests.support.settings import FRAMEIO_OAUTH, OLD_TEST_KEY, TEST_KEY
from tests.support.tokens import raw_ciphertexts

pytestmark = pytest.mark.django_db

NEW_KID = key_id(decode_key(TEST_KEY))
OLD_KID = key_id(decode_key(OLD_TEST_KEY))
OLD_FIRST = {**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [OLD_TEST_KEY, TEST_KEY]}
JSON_KEYS = {
    "by_status",
    "by_key_id",
    "failing",
    "overdue",
    "oldest_overdue_seconds",
    "revocations_pending",
}


@pytest.fixture
def users(django_user_model: Any) -> list[Any]:
    return [django_user_model.objects.create_user(f"user{index}") for index in range(6)]


def status_json(*args: str) -> dict[str, Any]:
    out = _run("--json", *args)
    return dict(json.loads(out))


def _run(*args: str) -> str:
    out = StringIO()
    call_command("frameio_oauth_status", *args, stdout=out)
    return out.getvalue()


def test_an_empty_table_reports_zero_everywhere() -> None:
    assert status_json() == {
        "by_status": {"active": 0, "reauth_required": 0, "revoked": 0},
        "by_key_id": {},
        "failing": {"count": 0, "rows": []},
        "overdue": 0,
        "oldest_overdue_seconds": None,
        "revocations_pending": 0,
    }


def test_json_has_exactly_the_documented_keys(users: list[Any], make_token: Any) -> None:
    make_token(users[0])
    assert set(status_json()) == JSON_KEYS


def test_tokens_are_counted_by_status(users: list[Any], make_token: Any) -> None:
    make_token(users[0])
    make_token(users[1])
    make_token(users[2], status=OAuthToken.Status.REAUTH_REQUIRED, next_refresh_at=None)
    make_token(users[3], status=OAuthToken.Status.REVOKED)
    report = status_json()
    assert report["by_status"] == {"active": 2, "reauth_required": 1, "revoked": 1}
    assert report["revocations_pending"] == 1


def test_rows_are_counted_by_the_key_their_secrets_are_under(
    users: list[Any], make_token: Any
) -> None:
    with override_settings(FRAMEIO_OAUTH=OLD_FIRST):
        make_token(users[0])
    make_token(users[1])
    make_token(users[2])
    make_token(users[3], refresh_token=None, next_refresh_at=None)
    assert status_json()["by_key_id"] == {OLD_KID: 1, NEW_KID: 3}


def test_a_row_under_a_key_no_longer_configured_is_named_in_the_text(
    users: list[Any], make_token: Any
) -> None:
    with override_settings(FRAMEIO_OAUTH=OLD_FIRST):
        make_token(users[0])
    make_token(users[1])
    out = _run()
    assert f"{NEW_KID} 1 (primary)" in out
    assert f"{OLD_KID} 1 (NOT CONFIGURED: cannot be decrypted)" in out


def test_an_old_key_still_configured_is_named_as_one_to_rotate_away(
    users: list[Any], make_token: Any
) -> None:
    make_token(users[0])
    with override_settings(FRAMEIO_OAUTH=OLD_FIRST):
        assert f"{NEW_KID} 1 (old key: frameio_rotate_keys moves them)" in _run()


def test_failing_rows_are_listed_with_their_last_error(users: list[Any], make_token: Any) -> None:
    retry_at = timezone.now() + timedelta(minutes=1)
    failing = make_token(
        users[0], failure_count=2, last_error="token endpoint timed out", next_refresh_at=retry_at
    )
    make_token(users[1])
    make_token(users[2], status=OAuthToken.Status.REAUTH_REQUIRED, failure_count=1)
    report = status_json()
    assert report["failing"]["count"] == 1
    assert report["failing"]["rows"] == [
        {
            "token_id": failing.pk,
            "user": "user0",
            "failures": 2,
            "last_error": "token endpoint timed out",
            "next_attempt": retry_at.isoformat(),
            "expires_at": failing.expires_at.isoformat(),
        }
    ]
    out = _run()
    assert "failing now: 1" in out
    assert f"token {failing.pk} of user0: 2 failure(s)" in out
    assert "token endpoint timed out" in out


def test_only_the_first_failing_rows_are_listed_and_the_rest_counted(
    users: list[Any], make_token: Any
) -> None:
    for user in users:
        make_token(user, failure_count=1, last_error="down")
    status = services.token_status(failing_listed=4)
    assert status.failing == 6
    assert len(status.failing_rows) == 4
    assert "failing now: 6" in _run()


def test_the_overdue_backlog_counts_due_rows_and_the_oldest_wait(
    users: list[Any], make_token: Any
) -> None:
    now = timezone.now()
    make_token(users[0], next_refresh_at=now - timedelta(seconds=90))
    make_token(users[1], next_refresh_at=now - timedelta(seconds=5))
    make_token(users[2], next_refresh_at=now + timedelta(seconds=60))
    make_token(users[3], status=OAuthToken.Status.REVOKED, next_refresh_at=now - timedelta(hours=1))
    make_token(
        users[4],
        status=OAuthToken.Status.REAUTH_REQUIRED,
        next_refresh_at=now - timedelta(hours=2),
    )
    backlog = services.backlog(now)
    assert backlog.overdue == 2
    assert backlog.oldest_overdue_seconds == pytest.approx(90, abs=0.01)


def test_max_overdue_passes_while_the_oldest_wait_is_within_it(
    users: list[Any], make_token: Any
) -> None:
    make_token(users[0], next_refresh_at=timezone.now() - timedelta(seconds=30))
    out = _run("--max-overdue", "300")
    assert "overdue: 1, the oldest due 30 s ago" in out


def test_max_overdue_fails_the_command_when_the_oldest_waited_longer(
    users: list[Any], make_token: Any
) -> None:
    make_token(users[0], next_refresh_at=timezone.now() - timedelta(seconds=600))
    with pytest.raises(CommandError, match="waited 600 s, over --max-overdue 300 s"):
        _run("--max-overdue", "300")


def test_max_overdue_keeps_the_json_on_stdout_when_it_fails(
    users: list[Any], make_token: Any
) -> None:
    make_token(users[0], next_refresh_at=timezone.now() - timedelta(seconds=600))
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("frameio_oauth_status", "--json", "--max-overdue", "60", stdout=out)
    assert json.loads(out.getvalue())["overdue"] == 1


def test_backlog_alone_prints_the_backlog_from_one_query(users: list[Any], make_token: Any) -> None:
    make_token(users[0], next_refresh_at=timezone.now() - timedelta(seconds=600))
    make_token(users[1], failure_count=2, last_error="down")
    with CaptureQueriesContext(connection) as queries:
        report = status_json("--backlog")
    assert len(queries) == 1
    assert report["overdue"] == 1
    assert report["oldest_overdue_seconds"] == pytest.approx(600, abs=5)
    assert set(report) == {"overdue", "oldest_overdue_seconds"}
    assert _run("--backlog").startswith("overdue: 1, the oldest due 60")


def test_backlog_alone_is_a_health_check_too(users: list[Any], make_token: Any) -> None:
    make_token(users[0], next_refresh_at=timezone.now() - timedelta(seconds=600))
    with pytest.raises(CommandError, match="over --max-overdue 300 s"):
        _run("--backlog", "--max-overdue", "300")


def test_max_overdue_passes_with_no_backlog_at_all() -> None:
    assert "overdue: 0" in _run("--max-overdue", "0")


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_max_overdue_refuses_what_is_not_a_number_of_seconds(value: str) -> None:
    with pytest.raises(CommandError, match="max-overdue"):
        _run("--max-overdue", value)


def test_the_output_carries_no_secret_nor_ciphertext(users: list[Any], make_token: Any) -> None:
    token = make_token(users[0], failure_count=1, last_error="down")
    out = _run() + _run("--json")
    access_ciphertext, refresh_ciphertext = raw_ciphertexts(token.pk)
    assert access_ciphertext and refresh_ciphertext
    for secret in (token.access_token, token.refresh_token):
        assert secret not in out
    for envelope in (access_ciphertext, refresh_ciphertext):
        assert envelope.split(":")[2][:16] not in out


def test_the_summary_costs_two_queries_with_nothing_failing(
    users: list[Any], make_token: Any
) -> None:
    for user in users:
        make_token(user)
    with CaptureQueriesContext(connection) as queries:
        services.token_status()
    assert len(queries) == 2


def test_the_admin_token_list_shows_the_summary_above_the_table(
    admin_browser: Any, users: list[Any], make_token: Any
) -> None:
    make_token(users[0], next_refresh_at=timezone.now() - timedelta(seconds=120))
    make_token(users[1], failure_count=3, last_error="down")
    make_token(users[2], status=OAuthToken.Status.REVOKED)
    page = admin_browser.get("/admin/frameio_oauth/oauthtoken/").content.decode()
    summary = page.index('id="frameio-status"')
    assert summary < page.index('id="result_list"')
    section = page[summary : page.index('id="result_list"')]
    assert "Failing now" in section
    assert '<a href="?status__exact=active&amp;failing=yes">1</a>' in section
    assert "Disconnected, revocation pending: 1" in section
    assert "Overdue" in section
    assert "Revocations pending" in section
    assert NEW_KID in section


def test_a_status_outside_the_choices_is_shown_as_stored(
    admin_browser: Any, users: list[Any], make_token: Any
) -> None:
    token = make_token(users[0])
    OAuthToken.objects.filter(pk=token.pk).update(status="expired")
    response = admin_browser.get("/admin/frameio_oauth/oauthtoken/")
    assert response.status_code == 200
    assert "expired: 1" in response.content.decode()


def test_the_admin_summary_is_counted_once_a_minute_not_on_every_page(
    admin_browser: Any, users: list[Any], make_token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_token(users[0])
    url = "/admin/frameio_oauth/oauthtoken/"
    assert "Active: 1" in admin_browser.get(url).content.decode()
    make_token(users[1])
    assert "Active: 1" in admin_browser.get(url).content.decode()
    monkeypatch.setattr("frameio_oauth.admin.STATUS_MAX_AGE", 0.0)  # the minute has passed
    assert "Active: 2" in admin_browser.get(url).content.decode()


def test_the_admin_summary_is_counted_again_after_an_action(
    admin_browser: Any, users: list[Any], make_token: Any, provider_http: Any
) -> None:
    from tests.support.frameio import REVOKE_URL

    token = make_token(users[0])
    url = "/admin/frameio_oauth/oauthtoken/"
    assert "Active: 1" in admin_browser.get(url).content.decode()
    provider_http.post(REVOKE_URL)
    admin_browser.post(
        url, {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"}
    )
    assert "Active: 0" in admin_browser.get(url).content.decode()
