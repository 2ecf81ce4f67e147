"""What the token admin's pages say: one name per token (its user's login name) on every
page, revoking called revoking, "Refresh now" in the history, a grant without a refresh token
shown as such, times in words. The actions' effects are in test_admin.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import responses
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from frameio_oauth.admin import forget_token_status
from frameio_oauth.models import OAuthToken
from tests.support.frameio import REVOKE_URL, TOKEN_URL

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/frameio_oauth/oauthtoken/"


def page_of(token: OAuthToken, view: str = "change") -> str:
    return f"{CHANGELIST}{token.pk}/{view}/"


def list_cell(response: Any, column: str) -> str:
    content = response.content.decode()
    start = content.index(f'class="field-{column}">') + len(f'class="field-{column}">')
    return content[start : content.index("</t", start)]


# --- one name ---------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["change", "delete", "history"])
def test_a_tokens_own_pages_name_it_by_its_users_login_name(
    admin_browser: Client, user: Any, make_token: Any, view: str
) -> None:
    token = make_token(user)
    page = admin_browser.get(page_of(token, view)).content.decode()
    assert "Frame.io token of alice" in page
    assert f"user {user.pk}" not in page


def test_a_tokens_page_loads_its_user_in_the_same_query(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    token = make_token(user)
    with CaptureQueriesContext(connection) as queries:
        admin_browser.get(page_of(token))
    token_queries = [q["sql"] for q in queries if '"frameio_oauth_oauthtoken"' in q["sql"]]
    assert len(token_queries) == 1
    assert '"auth_user"' in token_queries[0]


def test_the_list_names_each_token_by_login_name_without_a_query_per_row(
    admin_browser: Client, django_user_model: Any, make_token: Any
) -> None:
    def users(count: int, prefix: str) -> None:
        for index in range(count):
            make_token(django_user_model.objects.create_user(f"{prefix}{index}"))

    users(1, "first")
    with CaptureQueriesContext(connection) as one:
        admin_browser.get(CHANGELIST)
    users(4, "more")
    forget_token_status()  # both pages count the summary's queries
    with CaptureQueriesContext(connection) as five:
        response = admin_browser.get(CHANGELIST)
    assert len(five) == len(one)
    assert "more3" in list_cell(response, "user_name")


def test_the_history_of_a_refreshed_token_names_it_by_login_name(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(TOKEN_URL, json={"access_token": "NEW", "expires_in": 3600})
    admin_browser.post(CHANGELIST, {"action": "refresh_now", "_selected_action": [token.pk]})
    assert LogEntry.objects.get().object_repr.startswith("Frame.io token of alice")


def test_the_history_of_a_token_revoked_from_its_page_names_it_by_login_name(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    admin_browser.post(page_of(token, "delete"), {"post": "yes"})
    assert LogEntry.objects.get().object_repr.startswith("Frame.io token of alice")


# --- revoking, not deleting -------------------------------------------------------------------


def test_the_revoke_confirmation_for_selected_tokens_says_revoke_not_delete(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    tokens = [make_token(user), make_token(other_user)]
    response = admin_browser.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [t.pk for t in tokens]}
    )
    page = response.content.decode()
    assert "<title>Revoke at Frame.io and remove? |" in page
    assert "revoke the 2 selected Frame.io tokens at Frame.io and remove them here?" in page
    assert 'value="Yes, revoke and remove"' in page
    assert "delete the selected" not in page
    assert "Delete multiple objects" not in page


def test_the_revoke_confirmation_for_one_selected_token_speaks_of_one(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    token = make_token(user)
    response = admin_browser.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [token.pk]}
    )
    assert "revoke the selected Frame.io token at Frame.io and remove it here?" in (
        response.content.decode()
    )


def test_the_revoke_confirmation_of_one_token_says_revoke_not_delete(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    page = admin_browser.get(page_of(make_token(user), "delete")).content.decode()
    assert "<title>Revoke at Frame.io and remove? |" in page
    assert "Are you sure you want to revoke “Frame.io token of alice (Active)” at Frame.io" in page
    assert 'value="Yes, revoke and remove"' in page
    assert "delete the Frame.io token" not in page


def test_a_tokens_page_offers_revoke_and_remove_instead_of_delete(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    token = make_token(user)
    page = admin_browser.get(page_of(token)).content.decode()
    assert f'href="{page_of(token, "delete")}" class="deletelink">Revoke and remove</a>' in page


def test_the_action_is_named_revoke_and_remove(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    make_token(user)
    page = admin_browser.get(CHANGELIST).content.decode()
    assert "Revoke at Frame.io and remove selected Frame.io tokens" in page


# --- Refresh now in the history ---------------------------------------------------------------


def test_refresh_now_is_recorded_in_the_tokens_history(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(TOKEN_URL, json={"access_token": "NEW", "expires_in": 3600})
    admin_browser.post(CHANGELIST, {"action": "refresh_now", "_selected_action": [token.pk]})
    entry = LogEntry.objects.get()
    assert (int(entry.object_id), entry.action_flag, entry.change_message) == (
        token.pk,
        CHANGE,
        "Refreshed",
    )
    assert "Refreshed" in admin_browser.get(page_of(token, "history")).content.decode()


def test_a_failed_refresh_now_is_recorded_with_its_reason(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(TOKEN_URL, status=503)
    admin_browser.post(CHANGELIST, {"action": "refresh_now", "_selected_action": [token.pk]})
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.change_message) == (
        CHANGE,
        "Refresh failed: token endpoint answered HTTP 503",
    )


def test_refresh_now_of_a_grant_frameio_refused_says_why_without_ids(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user, status=OAuthToken.Status.REAUTH_REQUIRED, next_refresh_at=None)
    response = admin_browser.post(
        CHANGELIST, {"action": "refresh_now", "_selected_action": [token.pk]}, follow=True
    )
    page = response.content.decode()
    assert (
        "Frame.io token of alice (Re-authorization required) was not refreshed: Frame.io no "
        "longer accepts this grant; its user must connect again." in page
    )
    assert f"token {token.pk}" not in page
    assert len(provider_http.calls) == 0


# --- a grant without a refresh token ----------------------------------------------------------


def test_the_list_shows_a_token_without_a_refresh_token_as_such(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    make_token(user, refresh_token=None, next_refresh_at=None)
    assert "no refresh token" in list_cell(admin_browser.get(CHANGELIST), "state")


def test_the_list_does_not_say_no_refresh_token_of_a_token_that_has_one(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    make_token(user)
    assert "no refresh token" not in list_cell(admin_browser.get(CHANGELIST), "state")


def test_the_refresh_token_filter_lists_the_tokens_stored_without_one(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    without = make_token(user, refresh_token=None, next_refresh_at=None)
    with_one = make_token(other_user)
    missing = admin_browser.get(CHANGELIST, {"refresh_token": "no"})
    present = admin_browser.get(CHANGELIST, {"refresh_token": "yes"})
    assert [row.pk for row in missing.context["cl"].result_list] == [without.pk]
    assert [row.pk for row in present.context["cl"].result_list] == [with_one.pk]


def test_a_tokens_page_says_a_grant_without_a_refresh_token_cannot_be_renewed(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    token = make_token(user, refresh_token=None, next_refresh_at=None)
    page = admin_browser.get(page_of(token)).content.decode()
    assert "Frame.io gave no refresh token, so the user must connect again" in page


# --- times in words ---------------------------------------------------------------------------


def test_the_list_says_just_now_of_a_refresh_seconds_ago(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    make_token(user, last_refreshed_at=timezone.now() - timedelta(seconds=5))
    assert list_cell(admin_browser.get(CHANGELIST), "last_refreshed") == "just now"


def test_the_list_says_when_a_token_expires_under_its_status(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    make_token(user, expires_at=timezone.now() + timedelta(hours=2, minutes=30))
    assert "expires in 2\xa0hours" in list_cell(admin_browser.get(CHANGELIST), "state")


def test_the_list_is_titled_by_what_it_lists(admin_browser: Client) -> None:
    assert "<h1>Frame.io tokens</h1>" in admin_browser.get(CHANGELIST).content.decode()
