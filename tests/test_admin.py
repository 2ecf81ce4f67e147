from __future__ import annotations

from typing import Any

import pytest
import responses
from django.test import Client

from frameio_oauth.models import OAuthToken
from tests.conftest import REVOKE_URL, TOKEN_URL

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/frameio_oauth/oauthtoken/"


@pytest.fixture
def admin_browser(client: Client, django_user_model: Any) -> Client:
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.example", "pw"))
    return client


def secrets_of(token: OAuthToken) -> list[bytes]:
    raw = OAuthToken.objects.values_list("access_token_ciphertext", "refresh_token_ciphertext").get(
        pk=token.pk
    )
    return [token.access_token.encode(), token.refresh_token.encode(), *(v.encode() for v in raw)]


def test_change_list_renders_without_token_text(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    token = make_token(user)
    response = admin_browser.get(CHANGELIST)
    assert response.status_code == 200
    assert b"alice@frame.example" in response.content
    assert token.key_id.encode() in response.content
    for secret in secrets_of(token):
        assert secret not in response.content


def test_change_page_renders_fingerprints_not_tokens(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    token = make_token(user)
    response = admin_browser.get(f"{CHANGELIST}{token.pk}/change/")
    assert response.status_code == 200
    assert b"sha256:" in response.content
    for secret in secrets_of(token):
        assert secret not in response.content
    assert b'name="access_token' not in response.content


def test_change_page_of_an_undecryptable_row_still_renders(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    mine, theirs = make_token(user), make_token(other_user)
    OAuthToken.objects.filter(pk=theirs.pk).update(
        access_token_ciphertext=OAuthToken.objects.values_list(
            "access_token_ciphertext", flat=True
        ).get(pk=mine.pk)
    )
    response = admin_browser.get(f"{CHANGELIST}{theirs.pk}/change/")
    assert response.status_code == 200
    assert b"cannot be decrypted" in response.content


def test_search_finds_by_username_and_provider_email(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    make_token(user)
    make_token(other_user)
    by_name = admin_browser.get(CHANGELIST, {"q": "alice"})
    assert by_name.context["cl"].result_count == 1
    by_email = admin_browser.get(CHANGELIST, {"q": "bob@frame.example"})
    assert [t.user for t in by_email.context["cl"].result_list] == [other_user]


def test_status_filter_narrows_the_list(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    make_token(user)
    make_token(other_user, status=OAuthToken.Status.REAUTH_REQUIRED)
    response = admin_browser.get(CHANGELIST, {"status__exact": "reauth_required"})
    assert [t.user for t in response.context["cl"].result_list] == [other_user]


def test_there_is_no_add_page(admin_browser: Client) -> None:
    assert admin_browser.get(f"{CHANGELIST}add/").status_code == 403


def test_refresh_now_action_refreshes_through_services(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(TOKEN_URL, json={"access_token": "NEW", "expires_in": 3600})
    response = admin_browser.post(
        CHANGELIST, {"action": "refresh_now", "_selected_action": [token.pk]}, follow=True
    )
    assert b"1 token was refreshed" in response.content
    refreshed = OAuthToken.objects.get(pk=token.pk)
    assert refreshed.access_token == "NEW"
    assert refreshed.refresh_token == token.refresh_token


def test_refresh_now_reports_a_failure_and_keeps_the_token(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(TOKEN_URL, status=503)
    response = admin_browser.post(
        CHANGELIST, {"action": "refresh_now", "_selected_action": [token.pk]}, follow=True
    )
    assert b"503" in response.content
    assert OAuthToken.objects.get(pk=token.pk).access_token == token.access_token


def test_revoke_and_disconnect_action_removes_the_rows(
    admin_browser: Client,
    user: Any,
    other_user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
) -> None:
    tokens = [make_token(user), make_token(other_user)]
    provider_http.post(REVOKE_URL, body="")
    response = admin_browser.post(
        CHANGELIST,
        {"action": "revoke_and_disconnect", "_selected_action": [t.pk for t in tokens]},
        follow=True,
    )
    assert b"2 tokens were revoked and removed" in response.content
    assert not OAuthToken.objects.exists()
    assert len(provider_http.calls) == 2


def test_revoke_and_disconnect_during_an_outage_keeps_the_row_to_revoke_later(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, status=503)
    response = admin_browser.post(
        CHANGELIST,
        {"action": "revoke_and_disconnect", "_selected_action": [token.pk]},
        follow=True,
    )
    assert b"1 token is disconnected; Frame.io did not confirm its revocation" in response.content
    assert OAuthToken.objects.get(pk=token.pk).status == OAuthToken.Status.REVOKED


def test_plain_delete_is_not_offered_because_it_would_not_revoke(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    make_token(user)
    response = admin_browser.get(CHANGELIST)
    actions = [choice[0] for choice in response.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in actions
    assert {"refresh_now", "revoke_and_disconnect"} <= set(actions)
