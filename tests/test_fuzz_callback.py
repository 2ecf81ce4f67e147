"""Property tests of the callback view: any query string, any pending-flow state in the
session, signed in or not. It never fails with a server error, stores a grant only for a
flow its own visitor started, and shows no code, token, verifier or secret in any response
header, page or log record."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import pytest
import responses
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from frameio_oauth.models import OAuthToken
from frameio_oauth.views import SESSION_KEY
from tests.support.frameio import REVOKE_URL, TOKEN_URL, USERINFO_URL
from tests.support.logs import logged
from tests.support.settings import FRAMEIO_OAUTH

pytestmark = pytest.mark.django_db

CODE = "c0de-7b1e5d"
VERIFIER = "v3rifier-" + "q" * 40
TOKENS = {"access_token": "AT-9f8e7d", "refresh_token": "RT-6c5b4a", "expires_in": 3600}
SECRETS = (CODE, VERIFIER, TOKENS["access_token"], TOKENS["refresh_token"],
           str(FRAMEIO_OAUTH["CLIENT_SECRET"]))  # fmt: skip
STATE = "known-state-0123456789"


def no_secret(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


words = st.text(max_size=30).filter(no_secret)
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    words,
    st.lists(words, max_size=2),
    st.dictionaries(words, words, max_size=2),
)
# A pending flow as the start view writes it, or with any field changed to anything.
flow_values = st.fixed_dictionaries(
    {},
    optional={
        "verifier": st.one_of(st.just(VERIFIER), anything),
        "redirect_uri": st.one_of(st.just("http://testserver/frameio/callback/"), anything),
        "next": st.one_of(st.sampled_from(["/after/", ""]), anything),
        "starter": st.one_of(st.sampled_from(["self", None]), anything),
        "created": st.one_of(st.just("now"), anything),
    },
)
GENUINE = {
    "verifier": VERIFIER,
    "redirect_uri": "http://testserver/frameio/callback/",
    "next": "/after/",
    "starter": "self",
    "created": "now",
}
# The genuine flow with one field changed to anything (or left out).
changed_flows = st.sampled_from(sorted(GENUINE)).flatmap(
    lambda name: st.one_of(st.just(None), anything).map(
        lambda value: {k: v for k, v in {**GENUINE, name: value}.items() if v is not None}
    )
)
sessions = st.one_of(
    st.just({STATE: GENUINE}),
    changed_flows.map(lambda flow: {STATE: flow}),
    st.none(),
    anything,
    st.dictionaries(st.one_of(st.just(STATE), words), st.one_of(flow_values, anything), max_size=3),
)
extra = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["code", "state", "error", "iss", "scope"]), words),
        st.one_of(st.sampled_from([CODE, STATE, "access_denied", "https://evil.example"]), words),
    ),
    max_size=4,
)
params = st.one_of(
    extra.map(lambda more: [("state", STATE), ("code", CODE), *more]),
    extra,
)


def materialise(value: Any, user: Any) -> Any:
    """Turn the placeholders into what a real flow holds: now, the visitor's own pk."""
    if isinstance(value, dict):
        return {key: materialise(item, user) for key, item in value.items()}
    if value == "now":
        return time.time()
    if value == "self":
        return str(user.pk) if user is not None else None
    return value


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(signed_in=st.booleans(), pending=sessions, query=params)
# The genuine flow completed with a code that is not CODE (any code is good to the mock).
@example(signed_in=True, pending={STATE: GENUINE}, query=[("state", STATE), ("code", STATE)])
def test_any_callback_fails_cleanly_stores_only_its_own_flow_and_shows_no_secret(
    signed_in: bool, pending: Any, query: list[tuple[str, str]]
) -> None:
    with transaction.atomic(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TOKEN_URL, json=TOKENS)
        mock.get(USERINFO_URL, json={"id": "fio-fuzz", "email": "fuzz@frame.example"})
        mock.post(REVOKE_URL, body="")
        cache.clear()  # STATE is the same in every example; the spent mark must not be
        user = get_user_model().objects.create_user("fuzzer") if signed_in else None
        client = Client()
        if user is not None:
            client.force_login(user)
        session = client.session
        if pending is not None:
            session[SESSION_KEY] = materialise(pending, user)
        session.save()
        client.cookies["sessionid"] = session.session_key
        with logged() as log:
            response = client.get(f"/frameio/callback/?{urlencode(query)}")
        shown = [response.content.decode(errors="replace"), *map(str, response.items())]
        stored = OAuthToken.objects.exists()
        transaction.set_rollback(True)
    event(f"HTTP {response.status_code}{', stored' if stored else ''}")
    assert response.status_code in (302, 400, 403, 409, 502)
    if stored:
        # Only the genuine flow's state completes (the last value is the one read), with some
        # code: the mocked provider accepts any.
        given = dict(query)
        assert response.status_code == 302
        assert given.get("state") == STATE and given.get("code") and not given.get("error")
    for text in [*shown, *log.texts]:
        assert no_secret(text), text
