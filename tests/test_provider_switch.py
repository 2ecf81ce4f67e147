"""A token goes back only to the authorization server that issued it. After a site switches
servers (legacy Frame.io to V4 through Adobe IMS, or TOKEN_URL pointed elsewhere), a grant of
the old server is never refreshed or revoked at the new one, nor at the old one: the next
attempt marks it reauth_required, a disconnect deletes it here. Both servers are mocked and
would answer; the tests count their calls. End to end: test_e2e_provider_switch.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone

from frameio_oauth import provider, services, signals, tasks
from frameio_oauth.exceptions import ReauthorizationRequired
from frameio_oauth.models import OAuthToken
from tests.support.frameio import GOOD, GRANT
from tests.support.frameio import REVOKE_URL as LEGACY_REVOKE_URL
from tests.support.frameio import TOKEN_URL as LEGACY_TOKEN_URL
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.signals import Received

pytestmark = pytest.mark.django_db

LEGACY_SERVER = "https://applications.frame.io"
IMS_SERVER = "https://ims-na1.adobelogin.com"
IMS_TOKEN_URL = "https://ims-na1.adobelogin.com/ims/token/v3"
IMS_REVOKE_URL = "https://ims-na1.adobelogin.com/ims/revoke"
# The test settings (legacy Frame.io) after the switch to Frame.io V4.
V4 = {
    **FRAMEIO_OAUTH,
    "PROVIDER": "adobe-ims",
    "SCOPES": ["openid", "email", "profile", "offline_access", "additional_info.roles"],
}


@pytest.fixture
def servers(provider_http: responses.RequestsMock) -> responses.RequestsMock:
    """Both servers' token and revocation endpoints, answering as if all were well."""
    for token_url in (LEGACY_TOKEN_URL, IMS_TOKEN_URL):
        provider_http.post(token_url, json=GOOD)
    for revoke_url in (LEGACY_REVOKE_URL, IMS_REVOKE_URL):
        provider_http.post(revoke_url, body="")
    return provider_http


@pytest.fixture
def switched() -> Iterator[None]:
    """The site, switched to Frame.io V4."""
    with override_settings(FRAMEIO_OAUTH=V4):
        yield


@pytest.fixture
def legacy_grant(user: Any, make_token: Any) -> OAuthToken:
    """The user's grant, stored while the site used legacy Frame.io; not due."""
    token = make_token(user)
    assert token.authorization_server == LEGACY_SERVER
    return token


@pytest.fixture
def due_legacy_grant(user: Any, make_token: Any) -> OAuthToken:
    past = timezone.now() - timedelta(seconds=1)
    return make_token(user, next_refresh_at=past)


def assert_marked(token: OAuthToken) -> OAuthToken:
    row = OAuthToken.objects.get(pk=token.pk)
    assert row.status == OAuthToken.Status.REAUTH_REQUIRED
    assert row.next_refresh_at is None
    assert row.last_error.startswith("connect again: ")
    assert LEGACY_SERVER in row.last_error
    assert IMS_SERVER in row.last_error
    return row


# --- refreshes -------------------------------------------------------------------------------


def test_a_due_grant_of_the_old_server_is_marked_on_demand_without_any_call(
    user: Any, due_legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    with pytest.raises(ReauthorizationRequired, match="connect again"):
        services.get_access_token(user)
    assert_marked(due_legacy_grant)
    assert len(servers.calls) == 0


def test_a_fresh_grant_of_the_old_server_is_not_handed_out_after_the_switch(
    user: Any, legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    with pytest.raises(ReauthorizationRequired):
        services.get_access_token(user)
    assert_marked(legacy_grant)
    assert len(servers.calls) == 0


def test_the_sweep_marks_a_due_grant_of_the_old_server_without_any_call(
    due_legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    summary = services.refresh_due()
    assert (summary.reauth, summary.refreshed, summary.failed) == (1, 0, 0)
    assert_marked(due_legacy_grant)
    assert len(servers.calls) == 0


def test_the_fanned_out_task_marks_a_grant_of_the_old_server_without_any_call(
    due_legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    outcome = tasks.refresh_token_if_due.delay(due_legacy_grant.pk).get()
    assert outcome == services.Outcome.REAUTH.value
    assert_marked(due_legacy_grant)
    assert len(servers.calls) == 0


def test_a_forced_refresh_of_a_grant_of_the_old_server_marks_it_without_any_call(
    legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    with pytest.raises(ReauthorizationRequired):
        services.refresh(legacy_grant.pk, force=True)
    assert_marked(legacy_grant)
    assert len(servers.calls) == 0


def test_a_token_of_the_old_server_rejected_by_the_api_is_marked_not_refreshed(
    user: Any, legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    with pytest.raises(ReauthorizationRequired):
        services.replace_rejected_token(user, legacy_grant.access_token)
    assert_marked(legacy_grant)
    assert len(servers.calls) == 0


def test_marking_a_grant_of_the_old_server_sends_reauthorization_required(
    user: Any, due_legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    with Received(signals.reauthorization_required) as got, pytest.raises(ReauthorizationRequired):
        services.get_access_token(user)
    assert [call["token"].pk for call in got.calls] == [due_legacy_grant.pk]
    assert "connect again" in str(got.calls[0]["error"])


def test_inside_a_transaction_a_grant_of_the_old_server_is_refused_and_left_for_the_sweep(
    user: Any, legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    with transaction.atomic(), pytest.raises(ReauthorizationRequired, match="connect again"):
        services.get_access_token(user)
    assert OAuthToken.objects.get(pk=legacy_grant.pk).status == OAuthToken.Status.ACTIVE
    assert len(servers.calls) == 0


def test_a_grant_of_the_old_server_does_not_need_a_refresh(
    due_legacy_grant: OAuthToken, switched: None
) -> None:
    assert not services.needs_refresh(due_legacy_grant)


def test_pointing_token_url_at_another_server_marks_the_grants_of_the_first(
    user: Any, due_legacy_grant: OAuthToken, servers: responses.RequestsMock
) -> None:
    servers.post("https://idp.example/oauth2/token", json=GOOD)
    moved = {**FRAMEIO_OAUTH, "TOKEN_URL": "https://idp.example/oauth2/token"}
    with override_settings(FRAMEIO_OAUTH=moved), pytest.raises(ReauthorizationRequired):
        services.get_access_token(user)
    row = OAuthToken.objects.get(pk=due_legacy_grant.pk)
    assert row.status == OAuthToken.Status.REAUTH_REQUIRED
    assert "https://idp.example" in row.last_error
    assert len(servers.calls) == 0


def test_a_grant_of_the_configured_server_is_still_refreshed_there(
    user: Any, servers: responses.RequestsMock, switched: None
) -> None:
    services.store_grant(user, GRANT, provider.UserInfo(id="v4-user"))
    token = services.refresh(OAuthToken.objects.get(user=user).pk, force=True)
    assert token.access_token == GOOD["access_token"]
    assert [call.request.url for call in servers.calls] == [IMS_TOKEN_URL]


# --- disconnects and other revocations ------------------------------------------------------


def test_disconnect_deletes_a_grant_of_the_old_server_without_any_call(
    user: Any,
    legacy_grant: OAuthToken,
    servers: responses.RequestsMock,
    switched: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with (
        Received(signals.token_revoked) as got,
        django_capture_on_commit_callbacks(execute=True),
    ):
        result = services.disconnect(user)
    assert result.issued_elsewhere
    assert not (result.revoked_at_provider or result.pending)
    assert LEGACY_SERVER in result.error
    assert not OAuthToken.objects.filter(pk=legacy_grant.pk).exists()
    assert [call["revoked_at_provider"] for call in got.calls] == [False]
    assert len(servers.calls) == 0


def test_the_disconnect_button_on_an_old_grant_says_nothing_was_sent_to_frameio(
    signed_in: Client, legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    response = signed_in.post("/frameio/disconnect/", follow=True)
    assert b"nothing was sent to Frame.io" in response.content
    assert b"could not confirm" not in response.content
    assert not OAuthToken.objects.filter(pk=legacy_grant.pk).exists()
    assert len(servers.calls) == 0


def test_the_admins_delete_action_counts_old_grants_apart_and_sends_nothing(
    admin_browser: Client,
    legacy_grant: OAuthToken,
    servers: responses.RequestsMock,
    switched: None,
) -> None:
    form = {"action": "delete_selected", "_selected_action": [legacy_grant.pk], "post": "yes"}
    response = admin_browser.post("/admin/frameio_oauth/oauthtoken/", form, follow=True)
    assert b"1 token was removed with nothing sent to Frame.io" in response.content
    assert b"did not confirm" not in response.content
    assert not OAuthToken.objects.filter(pk=legacy_grant.pk).exists()
    assert len(servers.calls) == 0


def test_a_pending_revocation_of_the_old_server_is_dropped_by_the_sweep_without_any_call(
    user: Any, legacy_grant: OAuthToken, servers: responses.RequestsMock
) -> None:
    OAuthToken.objects.filter(pk=legacy_grant.pk).update(
        status=OAuthToken.Status.REVOKED, next_refresh_at=timezone.now() - timedelta(seconds=1)
    )
    with override_settings(FRAMEIO_OAUTH=V4):
        summary = services.refresh_due()
    assert (summary.revoked, summary.revocations_failed) == (1, 0)
    assert not OAuthToken.objects.filter(pk=legacy_grant.pk).exists()
    assert len(servers.calls) == 0


def test_connecting_another_account_after_the_switch_revokes_the_old_grant_nowhere(
    user: Any,
    legacy_grant: OAuthToken,
    servers: responses.RequestsMock,
    switched: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.store_grant(user, GRANT, provider.UserInfo(id="v4-user"))
    assert OAuthToken.objects.get(user=user).provider_user_id == "v4-user"
    assert len(servers.calls) == 0


def test_a_new_grant_makes_way_for_a_pending_revocation_of_the_old_server_without_a_call(
    user: Any,
    legacy_grant: OAuthToken,
    servers: responses.RequestsMock,
    switched: None,
) -> None:
    OAuthToken.objects.filter(pk=legacy_grant.pk).update(status=OAuthToken.Status.REVOKED)
    services.store_grant(user, GRANT, provider.UserInfo(id="v4-user"))
    assert OAuthToken.objects.get(user=user).authorization_server == IMS_SERVER
    assert len(servers.calls) == 0


def test_deleting_a_user_whose_grant_is_of_the_old_server_revokes_nothing(
    user: Any,
    legacy_grant: OAuthToken,
    servers: responses.RequestsMock,
    switched: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
    assert not OAuthToken.objects.exists()
    assert len(servers.calls) == 0


# --- new grants -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("oauth", "server"),
    [
        (FRAMEIO_OAUTH, LEGACY_SERVER),
        (V4, IMS_SERVER),
        (
            {**FRAMEIO_OAUTH, "TOKEN_URL": "http://127.0.0.1:8001/oauth2/token"},
            "http://127.0.0.1:8001",
        ),
        ({**V4, "ISSUER": "https://ims-eu.example"}, "https://ims-eu.example"),
    ],
    ids=["legacy", "v4", "token-url", "issuer"],
)
def test_a_new_grant_records_the_server_the_settings_name(
    user: Any, oauth: dict[str, Any], server: str
) -> None:
    with override_settings(FRAMEIO_OAUTH=oauth):
        services.store_grant(user, GRANT, provider.UserInfo(id="fio-user"))
    assert OAuthToken.objects.get(user=user).authorization_server == server


def test_signing_in_again_on_the_new_server_replaces_the_old_grant_with_one_of_its_own(
    user: Any, legacy_grant: OAuthToken, servers: responses.RequestsMock, switched: None
) -> None:
    services.store_grant(user, GRANT, provider.UserInfo(id=legacy_grant.provider_user_id))
    row = OAuthToken.objects.get(user=user)
    assert (row.authorization_server, row.status) == (IMS_SERVER, OAuthToken.Status.ACTIVE)
    assert services.get_access_token(user) == GRANT.access_token
    assert len(servers.calls) == 0
