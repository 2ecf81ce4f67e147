"""End to end against a real OAuth 2.0 server: the stand-in (django-oauth-toolkit) configured
like Frame.io, with rotating refresh tokens and reuse protection, running on loopback."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client, override_settings

from frameio_oauth import services
from frameio_oauth.models import OAuthToken
from tests.support.standin import (
    CONFIDENTIAL,
    PUBLIC,
    Standin,
    scopes_of,
    sign_in_with_frameio,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "client_config", [PUBLIC, CONFIDENTIAL], ids=["pkce-public-client", "basic-auth-client"]
)
def test_connecting_stores_a_token_the_server_accepts(
    client: Client, user: Any, standin: Standin, client_config: dict[str, str]
) -> None:
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=standin.settings(client_config)):
        response, _ = sign_in_with_frameio(client, standin, "demo")
    assert response.status_code == 302
    assert response["Location"] == "/done/"
    token = OAuthToken.objects.get(user=user)
    assert token.refresh_token
    assert token.provider_email == "demo@example.com"
    me = standin.me(token.access_token)
    assert me.status_code == 200
    assert standin.user_info(me)["id"] == token.provider_user_id


def test_without_the_offline_scope_no_refresh_token_is_stored(
    client: Client, user: Any, standin: Standin
) -> None:
    client.force_login(user)
    config = standin.settings(PUBLIC, SCOPES=["openid"])
    with override_settings(FRAMEIO_OAUTH=config):
        sign_in_with_frameio(client, standin, "demo")
    token = OAuthToken.objects.get(user=user)
    assert token.refresh_token is None
    assert token.next_refresh_at is None


def test_a_connected_user_signs_in_again_by_provider_id(
    client: Client, user: Any, standin: Standin
) -> None:
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=standin.settings(PUBLIC)):
        sign_in_with_frameio(client, standin, "erin")
        anonymous = Client()
        response, _ = sign_in_with_frameio(anonymous, standin, "erin")
    assert response.status_code == 302
    assert int(anonymous.session["_auth_user_id"]) == user.pk


def test_a_new_frameio_user_gets_an_account_when_signup_is_allowed(
    client: Client, standin: Standin, django_user_model: Any
) -> None:
    with override_settings(FRAMEIO_OAUTH=standin.settings(CONFIDENTIAL, ALLOW_SIGNUP=True)):
        response, _ = sign_in_with_frameio(client, standin, "frank")
    assert response.status_code == 302
    created = django_user_model.objects.get(pk=client.session["_auth_user_id"])
    assert created.email == "frank@example.com"
    assert not created.has_usable_password()
    assert standin.me(created.frameio_token.access_token).status_code == 200


def test_a_refresh_rotates_at_the_server_and_the_old_refresh_token_is_spent(
    client: Client, user: Any, standin: Standin
) -> None:
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=standin.settings(CONFIDENTIAL)):
        sign_in_with_frameio(client, standin, "demo")
        before = OAuthToken.objects.get(user=user)
        standin.reset_stats()
        after = services.refresh(before.pk, force=True)
    assert standin.stats().get("refresh_token") == 1
    assert after.refresh_token != before.refresh_token
    assert after.access_token != before.access_token
    assert standin.me(after.access_token).status_code == 200
    assert OAuthToken.objects.get(user=user).access_token == after.access_token


def test_disconnect_revokes_the_grant_at_the_server(
    client: Client, user: Any, standin: Standin
) -> None:
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=standin.settings(CONFIDENTIAL)):
        sign_in_with_frameio(client, standin, "demo")
        access_token = OAuthToken.objects.get(user=user).access_token
        response = client.post("/frameio/disconnect/")
    assert response.status_code == 302
    assert not OAuthToken.objects.filter(user=user).exists()
    assert standin.me(access_token).status_code == 401


@pytest.mark.parametrize("client_config", [PUBLIC, CONFIDENTIAL], ids=["pkce", "basic"])
def test_a_whole_flow_at_debug_level_logs_no_token_code_or_verifier(
    client: Client,
    user: Any,
    standin: Standin,
    caplog: pytest.LogCaptureFixture,
    client_config: dict[str, str],
) -> None:
    client.force_login(user)
    caplog.set_level(logging.DEBUG)
    with override_settings(FRAMEIO_OAUTH=standin.settings(client_config)):
        _, flow = sign_in_with_frameio(client, standin, "demo")
        token = OAuthToken.objects.get(user=user)
        secrets = {
            "code": flow["code"],
            "access": token.access_token,
            "refresh": token.refresh_token,
        }
        refreshed = services.refresh(token.pk, force=True)
        secrets.update(access2=refreshed.access_token, refresh2=refreshed.refresh_token)
        client.post("/frameio/disconnect/")
    if client_config is PUBLIC:
        secrets["verifier"] = flow["verifier"]
    assert caplog.records, "the flow should have logged something at DEBUG"
    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for record in caplog.records
    )
    for name, secret in secrets.items():
        assert secret, name
        assert secret not in logged, f"the {name} leaked into a log record"


def test_a_scope_added_to_settings_after_sign_in_does_not_break_refreshes(
    client: Client, user: Any, standin: Standin
) -> None:
    # RFC 6749 §6: a refresh may not ask for more than the user granted. Asking for the new
    # scope would get invalid_scope on every refresh of every existing grant.
    client.force_login(user)
    granted = standin.settings(CONFIDENTIAL, SCOPES=["openid", "offline_access"])
    with override_settings(FRAMEIO_OAUTH=granted):
        sign_in_with_frameio(client, standin, "demo")
    token = OAuthToken.objects.get(user=user)
    wider = standin.settings(CONFIDENTIAL, SCOPES=["openid", "email", "offline_access"])
    with override_settings(FRAMEIO_OAUTH=wider):
        refreshed = services.refresh(token.pk, force=True)
    assert refreshed.access_token != token.access_token
    assert scopes_of(refreshed.scope) == {"openid", "offline_access"}
    assert standin.me(refreshed.access_token).status_code == 200


def test_a_disconnect_during_an_outage_is_revoked_at_the_server_by_a_later_sweep(
    client: Client, user: Any, standin: Standin
) -> None:
    client.force_login(user)
    config = standin.settings(CONFIDENTIAL)
    with override_settings(FRAMEIO_OAUTH=config):
        sign_in_with_frameio(client, standin, "demo")
    access_token = OAuthToken.objects.get(user=user).access_token
    with socket.socket() as probe:  # a port nobody listens on: the revocation endpoint is down
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/oauth2/revoke"
    with override_settings(FRAMEIO_OAUTH={**config, "REVOKE_URL": down}):
        result = services.disconnect(user)
    assert result.pending
    assert standin.me(access_token).status_code == 200  # still live at the server
    row = OAuthToken.objects.get(user=user)
    with (
        override_settings(FRAMEIO_OAUTH=config),
        time_machine.travel(row.next_refresh_at + timedelta(seconds=1), tick=True),
    ):
        summary = services.refresh_due()
    assert summary.revoked == 1
    assert not OAuthToken.objects.filter(user=user).exists()
    assert standin.me(access_token).status_code == 401


def test_a_client_that_enforces_csrf_like_a_browser_signs_in_through_the_start_page(
    standin: Standin,
) -> None:
    browser_like = Client(enforce_csrf_checks=True)
    with override_settings(FRAMEIO_OAUTH=standin.settings(PUBLIC, ALLOW_SIGNUP=True)):
        response, _ = sign_in_with_frameio(browser_like, standin, "frank")
    assert response.status_code == 302
    assert response["Location"] == "/done/"
    assert OAuthToken.objects.get(user_id=browser_like.session["_auth_user_id"])


def test_the_servers_iss_on_the_callback_matches_the_issuer_and_the_user_is_connected(
    client: Client, user: Any, standin: Standin
) -> None:
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=standin.settings(CONFIDENTIAL)):
        response, query = sign_in_with_frameio(client, standin, "demo")
    assert query["iss"] == standin.url
    assert response.status_code == 302
    assert OAuthToken.objects.filter(user=user).exists()


def test_an_iss_from_another_server_is_refused_and_the_code_is_never_redeemed(
    client: Client, user: Any, standin: Standin
) -> None:
    client.force_login(user)
    config = standin.settings(CONFIDENTIAL, ISSUER="https://ims-na1.adobelogin.com")
    standin.reset_stats()
    with override_settings(FRAMEIO_OAUTH=config):
        response, _ = sign_in_with_frameio(client, standin, "demo")
    assert response.status_code == 400
    assert b'data-error-code="wrong_issuer"' in response.content
    assert standin.stats().get("authorization_code", 0) == 0
    assert not OAuthToken.objects.exists()
