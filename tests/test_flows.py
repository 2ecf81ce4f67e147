"""Pending sign-in flows, as the callback meets them: a state that is single-use, this
session's and unexpired, with its PKCE verifier; and a flow completes only for the visitor who
started it, refused before the code exchange, so the code is never redeemed and no grant
exists to give back."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import responses
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.auth import SESSION_KEY as USER_SESSION_KEY
from django.core.cache import cache
from django.test import Client

from frameio_oauth.models import OAuthToken
from frameio_oauth.views import SESSION_KEY
from tests.support.callback import assert_refused, callback, provider_answers, start
from tests.support.frameio import TOKEN_URL

pytestmark = pytest.mark.django_db


# --- state and verifier -----------------------------------------------------------------------


def test_login_redirects_to_the_provider_and_keeps_state_and_verifier_in_the_session(
    signed_in: Client,
) -> None:
    state = start(signed_in, "/after/")
    flow = signed_in.session[SESSION_KEY][state]
    assert flow["next"] == "/after/"
    assert 43 <= len(flow["verifier"]) <= 128
    assert flow["redirect_uri"] == "http://testserver/frameio/callback/"


def test_login_keeps_only_a_few_pending_flows(signed_in: Client) -> None:
    states = [start(signed_in) for _ in range(8)]
    assert set(signed_in.session[SESSION_KEY]) == set(states[-5:])


def test_callback_with_missing_state_is_rejected(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    start(signed_in)
    assert_refused(callback(signed_in, code="C"), "missing_state")
    assert len(provider_http.calls) == 0


def test_callback_with_unknown_state_is_rejected(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    start(signed_in)
    assert_refused(callback(signed_in, state="forged", code="C"), "unknown_state")
    assert len(provider_http.calls) == 0


def test_a_used_state_coming_back_for_a_connected_user_leads_to_the_connected_page(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    # Connect, then the Back button to the consent page, and "Authorize" again.
    provider_answers(provider_http)
    state = start(signed_in)
    assert callback(signed_in, state=state, code="C").status_code == 302
    response = callback(signed_in, state=state, code="C2")
    assert response.status_code == 302
    assert response["Location"] == "/frameio/connected/"
    assert len(provider_http.calls) == 2  # the first exchange and its user info, no more
    page = signed_in.get(response["Location"])
    assert b"Frame.io is already connected." in page.content


def test_a_never_used_state_for_a_connected_user_is_still_an_error(
    signed_in: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # Such as a flow to switch accounts that newer flows evicted: that attempt did fail.
    make_token(user)
    response = callback(signed_in, state="never-issued", code="C")
    assert response.status_code == 400
    assert b'data-error-code="unknown_state"' in response.content


def test_callback_with_reused_state_is_rejected(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, status=400, json={"error": "invalid_request"})
    state = start(signed_in)
    callback(signed_in, state=state, code="C")
    assert_refused(callback(signed_in, state=state, code="C2"), "unknown_state")
    assert len(provider_http.calls) == 1


def test_callback_with_a_replayed_code_is_rejected_without_a_second_exchange(
    signed_in: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    state = start(signed_in)
    assert callback(signed_in, state=state, code="C").status_code == 302
    OAuthToken.objects.all().delete()
    assert_refused(callback(signed_in, state=state, code="C"), "unknown_state")
    assert len([c for c in provider_http.calls if c.request.url == TOKEN_URL]) == 1


def test_callback_with_state_from_another_session_is_rejected(
    signed_in: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    victim_state = start(Client())
    assert_refused(callback(signed_in, state=victim_state, code="C"), "unknown_state")
    assert len(provider_http.calls) == 0


def test_callback_with_an_expired_flow_is_rejected(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    state = start(signed_in)
    session = signed_in.session
    session[SESSION_KEY][state]["created"] -= 3600
    session.save()
    assert_refused(callback(signed_in, state=state, code="C"), "expired_state")


def test_a_state_spent_by_a_racing_request_is_refused(
    signed_in: Client, provider_http: responses.RequestsMock
) -> None:
    state = start(signed_in)
    # What a concurrent callback with the same session leaves behind once it has passed.
    cache.add("frameio_oauth:spent-state:" + hashlib.sha256(state.encode()).hexdigest(), 1)
    assert_refused(callback(signed_in, state=state, code="C"), "unknown_state")
    assert len(provider_http.calls) == 0


# --- who started the flow ---------------------------------------------------------------------


def sign_in_behind_the_flows_back(client: Client, user: Any | None) -> None:
    """Change who the session belongs to without touching its pending flows, as a session
    shared between people, or another login mechanism, could."""
    session = client.session
    for key in (USER_SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY):
        session.pop(key, None)
    if user is not None:
        session[USER_SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()


def test_the_flow_records_who_started_it(client: Client, user: Any) -> None:
    client.force_login(user)
    state = start(client)
    assert client.session[SESSION_KEY][state]["starter"] == str(user.pk)


def test_a_flow_started_anonymously_is_refused_once_the_visitor_has_signed_in(
    client: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    state = start(client)
    client.force_login(user)  # a password sign-in keeps the session's data
    response = callback(client, state=state, code="C")
    assert_refused(response, "other_user", 403)
    assert b"started by someone else" in response.content
    assert len(provider_http.calls) == 0


def test_a_flow_started_by_one_user_is_refused_for_another(
    client: Client, user: Any, other_user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    client.force_login(user)
    state = start(client)
    sign_in_behind_the_flows_back(client, other_user)
    assert_refused(callback(client, state=state, code="C"), "other_user", 403)
    assert len(provider_http.calls) == 0


def test_a_flow_started_by_a_user_is_refused_once_nobody_is_signed_in(
    client: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    client.force_login(user)
    state = start(client)
    sign_in_behind_the_flows_back(client, None)
    assert_refused(callback(client, state=state, code="C"), "other_user", 403)
    assert len(provider_http.calls) == 0


def test_a_refused_flow_has_spent_its_state(
    client: Client, user: Any, other_user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    client.force_login(user)
    state = start(client)
    sign_in_behind_the_flows_back(client, other_user)
    callback(client, state=state, code="C")
    sign_in_behind_the_flows_back(client, user)
    assert_refused(callback(client, state=state, code="C"), "unknown_state")
    assert len(provider_http.calls) == 0


def test_a_flow_saved_without_its_starter_is_refused(
    client: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    # A flow from before flows recorded their starter: whose it was cannot be known.
    provider_answers(provider_http)
    client.force_login(user)
    state = start(client)
    session = client.session
    del session[SESSION_KEY][state]["starter"]
    session.save()
    assert_refused(callback(client, state=state, code="C"), "other_user", 403)


@pytest.mark.parametrize("verifier", ["", "short", "x" * 129, "é" * 50, 42])
def test_a_flow_whose_verifier_this_app_could_not_have_written_is_refused(
    signed_in: Client, provider_http: responses.RequestsMock, verifier: object
) -> None:
    provider_answers(provider_http)
    state = start(signed_in)
    session = signed_in.session
    session[SESSION_KEY][state]["verifier"] = verifier
    session.save()
    assert_refused(callback(signed_in, state=state, code="C"), "unknown_state")
    assert len(provider_http.calls) == 0


def test_the_user_who_started_the_flow_is_connected(
    client: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    client.force_login(user)
    response = callback(client, state=start(client), code="C")
    assert response.status_code == 302
    assert OAuthToken.objects.get().user == user
