"""A callback completes only the flow its own visitor started: whoever is signed in at the
callback must be whoever pressed the button. Refused before the code exchange, so the code is
never redeemed and no grant exists to give back."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.auth import SESSION_KEY as USER_SESSION_KEY
from django.test import Client

from frameio_oauth.models import OAuthToken
from frameio_oauth.views import SESSION_KEY
from tests.test_views import assert_refused, callback, provider_answers, start

pytestmark = pytest.mark.django_db


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


def test_the_user_who_started_the_flow_is_connected(
    client: Client, user: Any, provider_http: responses.RequestsMock
) -> None:
    provider_answers(provider_http)
    client.force_login(user)
    response = callback(client, state=start(client), code="C")
    assert response.status_code == 302
    assert OAuthToken.objects.get().user == user
