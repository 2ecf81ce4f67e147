"""End to end against a second, independent authorization server: panva's oidc-provider
(Node.js), configured like Frame.io in tests/interop/server.mjs, on loopback.

Each claim is checked at the server (its userinfo and token endpoints, and what it counted) as
well as in our database. Where this server and the app disagree, the test says so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from frameio_oauth import services
from frameio_oauth.exceptions import ReauthorizationRequired
from frameio_oauth.http import session_for
from frameio_oauth.models import OAuthToken
from tests.support.interop_server import (
    CONFIDENTIAL,
    PUBLIC,
    RESERVED_CHARACTERS,
    Account,
    InteropServer,
    sign_in,
    start_server,
)
from tests.support.tokens import make_due

pytestmark = [pytest.mark.django_db, pytest.mark.oidc_provider]

ACCOUNTS = {
    "demo": Account(password="demo-pw", sub="oidc-sub-demo", email="demo@example.com"),
    "erin": Account(password="erin-pw", sub="oidc-sub-erin", email="erin@example.com"),
}
ACCESS_TOKEN_TTL = 600
CLIENTS = pytest.mark.parametrize(
    "client_config", [PUBLIC, CONFIDENTIAL], ids=["public-pkce", "confidential-basic"]
)


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteropServer]:
    """One oidc-provider for the module (the oidc_provider marker makes conftest skip the
    module locally, and fail it in CI, when Node.js or the package is missing)."""
    server = start_server(
        tmp_path_factory.mktemp("oidc-provider") / "server.log",
        ACCOUNTS,
        access_token_ttl=ACCESS_TOKEN_TTL,
    )
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_counts(oidc: InteropServer) -> None:
    oidc.reset_stats()


def connect(
    client: Client, user: Any, oidc: InteropServer, config: dict[str, Any], account: str = "demo"
) -> OAuthToken:
    """``user`` connects the server's ``account`` through the start page."""
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=config):
        response, _ = sign_in(client, oidc, account)
    assert response.status_code == 302, response.content[:500]
    return OAuthToken.objects.get(user=user)


# --- connect and sign in ----------------------------------------------------------------------


@CLIENTS
def test_connecting_stores_a_token_that_the_servers_userinfo_accepts(
    client: Client, user: Any, oidc: InteropServer, client_config: dict[str, str]
) -> None:
    token = connect(client, user, oidc, oidc.settings(client_config))
    me = oidc.userinfo(token.access_token)
    assert me.status_code == 200
    assert me.json()["sub"] == token.provider_user_id == "oidc-sub-demo"
    assert token.provider_email == "demo@example.com"
    assert token.refresh_token
    assert set(token.scope.split()) == {"openid", "email", "offline_access"}
    lifetime = (token.expires_at - timezone.now()).total_seconds()
    assert ACCESS_TOKEN_TTL - 30 < lifetime <= ACCESS_TOKEN_TTL
    assert oidc.stats() == {"token:authorization_code": 1}


def test_the_server_refuses_a_public_client_without_pkce_and_the_app_shows_its_error(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    # The server is set up as Frame.io's: PKCE required of public clients.
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=oidc.settings(PUBLIC, PKCE=False)):
        response, query = sign_in(client, oidc, "demo")
    assert query["error"] == "invalid_request"
    assert query["iss"] == oidc.issuer
    assert response.status_code == 400
    assert b'data-error-code="provider_error"' in response.content
    assert oidc.stats() == {"authorization:invalid_request": 1}
    assert not OAuthToken.objects.exists()


@CLIENTS
def test_a_connected_user_signs_in_again_by_the_servers_sub(
    client: Client,
    user: Any,
    other_user: Any,
    oidc: InteropServer,
    client_config: dict[str, str],
) -> None:
    config = oidc.settings(client_config)
    connect(client, user, oidc, config, "demo")
    connect(Client(), other_user, oidc, config, "erin")
    anonymous = Client()
    with override_settings(FRAMEIO_OAUTH=config):
        response, _ = sign_in(anonymous, oidc, "erin")
    assert response.status_code == 302
    assert int(anonymous.session["_auth_user_id"]) == other_user.pk
    token = OAuthToken.objects.get(user=other_user)
    assert oidc.userinfo(token.access_token).json()["sub"] == token.provider_user_id
    assert token.provider_user_id == "oidc-sub-erin"
    assert oidc.stats() == {"token:authorization_code": 3}


def test_a_client_id_and_secret_with_reserved_characters_authenticate_at_every_endpoint(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    config = oidc.settings(RESERVED_CHARACTERS)
    token = connect(client, user, oidc, config)
    with override_settings(FRAMEIO_OAUTH=config):
        services.refresh(token.pk, force=True)
        result = services.disconnect(user)
    assert result.revoked_at_provider
    assert oidc.stats() == {
        "token:authorization_code": 1,
        "token:refresh_token": 1,
        "refresh_scope:openid email offline_access": 1,
        "grant_revoked": 1,
    }


# --- refresh and rotation ---------------------------------------------------------------------


@CLIENTS
def test_a_refresh_rotates_at_the_server_and_the_old_refresh_token_is_refused_there(
    client: Client, user: Any, oidc: InteropServer, client_config: dict[str, str]
) -> None:
    config = oidc.settings(client_config)
    before = connect(client, user, oidc, config)
    with override_settings(FRAMEIO_OAUTH=config):
        after = services.refresh(before.pk, force=True)
    assert after.refresh_token != before.refresh_token
    assert after.access_token != before.access_token
    assert OAuthToken.objects.get(pk=before.pk).refresh_token == after.refresh_token
    assert oidc.userinfo(after.access_token).status_code == 200
    assert oidc.stats()["token:refresh_token"] == 1
    assert before.refresh_token is not None
    spent = oidc.refresh_directly(client_config, before.refresh_token)
    assert spent.status_code == 400
    assert spent.json()["error"] == "invalid_grant"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_24_threads_asking_for_one_due_token_cause_exactly_one_refresh_at_the_server(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    config = oidc.settings(CONFIDENTIAL)
    token = connect(client, user, oidc, config)
    make_due(token)
    oidc.reset_stats()
    callers = 24
    start = threading.Barrier(callers)
    results: list[str] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            start.wait(timeout=30)
            results.append(services.get_access_token(user))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    # One override around all threads: override_settings swaps a global and is not
    # thread-safe to enter and leave from many threads at once.
    with override_settings(FRAMEIO_OAUTH=config):
        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    assert oidc.stats() == {
        "token:refresh_token": 1,
        "refresh_scope:openid email offline_access": 1,
    }
    stored = OAuthToken.objects.get(pk=token.pk)
    assert stored.access_token != token.access_token
    assert results == [stored.access_token] * callers
    assert oidc.userinfo(stored.access_token).status_code == 200


def test_an_access_token_the_server_does_not_know_is_replaced_by_session_for_on_its_401(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    # As when the server ends an access token before its expires_in. (Revoking it through
    # RFC 7009 will not do here: oidc-provider then drops the refresh token too.)
    config = oidc.settings(CONFIDENTIAL)
    token = connect(client, user, oidc, config)
    token.access_token = "an-access-token-this-server-never-issued"
    token.save(update_fields=["access_token"])
    with override_settings(FRAMEIO_OAUTH=config):
        me = session_for(user).get(config["USERINFO_URL"], timeout=10)
    assert [answer.status_code for answer in me.history] == [401]
    assert me.status_code == 200
    assert me.json()["sub"] == token.provider_user_id
    assert oidc.stats()["token:refresh_token"] == 1
    stored = OAuthToken.objects.get(pk=token.pk)
    assert stored.access_token == me.request.headers["Authorization"].removeprefix("Bearer ")


# --- reuse of a rotated refresh token ---------------------------------------------------------


def test_a_replayed_refresh_token_revokes_the_grant_and_the_next_refresh_marks_reauth_required(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    config = oidc.settings(CONFIDENTIAL)
    first = connect(client, user, oidc, config)
    with override_settings(FRAMEIO_OAUTH=config):
        current = services.refresh(first.pk, force=True)
    assert first.refresh_token is not None
    replay = oidc.refresh_directly(CONFIDENTIAL, first.refresh_token)
    assert replay.json()["error"] == "invalid_grant"
    # The server ended the whole grant, the current tokens with it.
    assert oidc.stats()["grant_revoked"] == 1
    assert oidc.userinfo(current.access_token).status_code == 401

    make_due(current)
    with override_settings(FRAMEIO_OAUTH=config):
        summary = services.refresh_due()
    assert summary.reauth == 1
    row = OAuthToken.objects.get(pk=first.pk)
    assert row.status == OAuthToken.Status.REAUTH_REQUIRED
    assert row.refresh_token == current.refresh_token
    assert oidc.stats()["token:refresh_token:invalid_grant"] == 2


def test_a_refresh_token_restored_from_before_a_rotation_revokes_the_grant_and_the_row_is_kept(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    # As after restoring a database backup taken before the last rotation: the app itself
    # presents a spent refresh token.
    config = oidc.settings(CONFIDENTIAL)
    first = connect(client, user, oidc, config)
    with override_settings(FRAMEIO_OAUTH=config):
        current = services.refresh(first.pk, force=True)
        restored = OAuthToken.objects.get(pk=first.pk)
        restored.refresh_token = first.refresh_token
        restored.save(update_fields=["refresh_token"])
        with pytest.raises(ReauthorizationRequired):
            services.refresh(first.pk, force=True)
    row = OAuthToken.objects.get(pk=first.pk)
    assert row.status == OAuthToken.Status.REAUTH_REQUIRED
    assert oidc.stats()["grant_revoked"] == 1
    assert oidc.stats()["token:refresh_token:invalid_grant"] == 1
    assert oidc.userinfo(current.access_token).status_code == 401


# --- iss (RFC 9207) ---------------------------------------------------------------------------


def test_the_callback_carries_the_servers_iss_and_is_accepted(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=oidc.settings(CONFIDENTIAL)):
        response, query = sign_in(client, oidc, "demo")
    assert query["iss"] == oidc.issuer
    assert response.status_code == 302
    assert OAuthToken.objects.filter(user=user).exists()
    assert oidc.stats() == {"token:authorization_code": 1}


def test_a_wrong_issuer_setting_refuses_the_callback_before_any_token_request(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    client.force_login(user)
    config = oidc.settings(CONFIDENTIAL, ISSUER="https://ims-na1.adobelogin.com")
    with override_settings(FRAMEIO_OAUTH=config):
        response, query = sign_in(client, oidc, "demo")
    assert query["iss"] == oidc.issuer
    assert response.status_code == 400
    assert b'data-error-code="wrong_issuer"' in response.content
    assert oidc.stats() == {}
    assert not OAuthToken.objects.exists()


# --- scope ------------------------------------------------------------------------------------


def test_a_scope_added_to_settings_after_sign_in_is_not_asked_for_on_refresh(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    narrow = oidc.settings(CONFIDENTIAL, SCOPES=["openid", "offline_access"])
    token = connect(client, user, oidc, narrow)
    with override_settings(FRAMEIO_OAUTH=oidc.settings(CONFIDENTIAL)):
        refreshed = services.refresh(token.pk, force=True)
    assert oidc.stats() == {
        "token:authorization_code": 1,
        "token:refresh_token": 1,
        "refresh_scope:openid offline_access": 1,
    }
    assert set(refreshed.scope.split()) == {"openid", "offline_access"}
    me = oidc.userinfo(refreshed.access_token)
    assert me.status_code == 200
    assert "email" not in me.json()


def test_a_refresh_scope_the_server_refuses_is_asked_again_as_granted(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    # The row says the grant holds email, which it does not: oidc-provider refuses a refresh
    # that names a scope its refresh token lacks (invalid_scope), without spending it.
    narrow = oidc.settings(CONFIDENTIAL, SCOPES=["openid", "offline_access"])
    token = connect(client, user, oidc, narrow)
    OAuthToken.objects.filter(pk=token.pk).update(scope="openid email offline_access")
    with override_settings(FRAMEIO_OAUTH=oidc.settings(CONFIDENTIAL)):
        refreshed = services.refresh(token.pk, force=True)
    assert oidc.stats() == {
        "token:authorization_code": 1,
        "token:refresh_token:invalid_scope": 1,
        "refresh_scope:openid email offline_access": 1,
        "token:refresh_token": 1,
        "refresh_scope:": 1,
    }
    assert refreshed.refresh_token != token.refresh_token
    assert set(refreshed.scope.split()) == {"openid", "offline_access"}
    assert oidc.userinfo(refreshed.access_token).status_code == 200


# --- disconnect -------------------------------------------------------------------------------


@CLIENTS
def test_disconnect_revokes_the_grant_at_the_server(
    client: Client, user: Any, oidc: InteropServer, client_config: dict[str, str]
) -> None:
    config = oidc.settings(client_config)
    token = connect(client, user, oidc, config)
    with override_settings(FRAMEIO_OAUTH=config):
        response = client.post("/frameio/disconnect/")
    assert response.status_code == 302
    assert not OAuthToken.objects.filter(user=user).exists()
    assert oidc.stats()["grant_revoked"] == 1
    assert oidc.userinfo(token.access_token).status_code == 401
    assert token.refresh_token is not None
    refused = oidc.refresh_directly(client_config, token.refresh_token)
    assert refused.json()["error"] == "invalid_grant"


# --- where this server and the app's defaults disagree ----------------------------------------


def test_without_prompt_consent_the_server_ignores_offline_access_and_no_refresh_token_is_stored(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    # OpenID Connect Core §11: offline_access counts only with prompt=consent. The app sends
    # no prompt (Adobe IMS needs none), so against this server a sign-in gets no refresh
    # token unless AUTHORIZE_URL carries prompt=consent; the app stores what it got, silently.
    token = connect(client, user, oidc, oidc.settings(CONFIDENTIAL, prompt_consent=False))
    assert token.refresh_token is None
    assert token.next_refresh_at is None
    assert set(token.scope.split()) == {"openid", "email"}
    assert oidc.userinfo(token.access_token).status_code == 200


def test_the_adobe_ims_presets_comma_separated_scope_is_no_scope_at_all_to_this_server(
    client: Client, user: Any, oidc: InteropServer
) -> None:
    # RFC 6749 §3.3 separates scopes with spaces: "openid,email,offline_access" is one scope
    # this server does not know, so nothing is granted and it answers access_denied.
    client.force_login(user)
    with override_settings(FRAMEIO_OAUTH=oidc.settings(CONFIDENTIAL, PROVIDER="adobe-ims")):
        response, query = sign_in(client, oidc, "demo")
    assert query["error"] == "access_denied"
    assert query["iss"] == oidc.issuer
    assert response.status_code == 400
    assert b'data-error-code="access_denied"' in response.content
    assert oidc.stats() == {"authorization:access_denied": 1}
    assert not OAuthToken.objects.exists()
