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
from django.test import Client, override_settings
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
ACCESS, REFRESH = "AT-9f8e7d", "RT-6c5b4a"
ISSUER = "https://issuer.example"
STATE = "known-state-0123456789"
SETTINGS = {**FRAMEIO_OAUTH, "ISSUER": ISSUER}
SECRETS = (CODE, VERIFIER, ACCESS, REFRESH, str(FRAMEIO_OAUTH["CLIENT_SECRET"]))


def no_secret(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


words = st.text(st.characters(exclude_categories=()), max_size=30).filter(no_secret)
odd_text = st.sampled_from(["", "\ud800", "\u20ac", "x" * 300, "a\x00b", "\u202e", "ok"])
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
    extra.map(lambda more: [("state", STATE), ("code", CODE), ("iss", ISSUER), *more]),
    extra,
)
# What the provider answers: the genuine tokens and user, or any of them changed to something
# odd (a token that is not ASCII, an id too long, an error that echoes the code).
token_answers = st.one_of(
    st.just((200, {"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 3600})),
    st.fixed_dictionaries(
        {
            "access_token": st.one_of(st.just(ACCESS), odd_text.map(lambda t: ACCESS + t)),
            "refresh_token": st.one_of(st.just(REFRESH), odd_text.map(lambda t: REFRESH + t)),
            "expires_in": st.one_of(st.just(3600), anything),
            "scope": st.one_of(st.just("account.read offline"), odd_text, anything),
            "token_type": st.one_of(st.just("Bearer"), odd_text, anything),
        }
    ).map(lambda body: (200, body)),
    st.sampled_from(
        [
            (400, {"error": "invalid_grant", "error_description": f"code {CODE} was used"}),
            (400, {"error": "invalid_client"}),
            (503, {"error": "temporarily_unavailable"}),
        ]
    ),
)
user_answers = st.one_of(
    st.just((200, {"id": "fio-fuzz", "email": "fuzz@frame.example"})),
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.just("fio-fuzz"), odd_text, anything),
            "email": st.one_of(st.just("fuzz@frame.example"), odd_text, anything),
        }
    ).map(lambda body: (200, body)),
    st.sampled_from([(401, {"error": "invalid_token"}), (500, {})]),
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
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    signed_in=st.booleans(),
    pending=sessions,
    query=params,
    token_answer=token_answers,
    user_answer=user_answers,
)
# The genuine flow completed with a code that is not CODE (any code is good to the mock).
@example(
    signed_in=True,
    pending={STATE: GENUINE},
    query=[("state", STATE), ("code", STATE)],
    token_answer=(200, {"access_token": ACCESS, "refresh_token": REFRESH}),
    user_answer=(200, {"id": "fio-fuzz"}),
)
# The genuine flow without a code, and a refused code whose error echoes it.
@example(
    signed_in=False,
    pending={STATE: GENUINE},
    query=[("state", STATE)],
    token_answer=(200, {"access_token": ACCESS}),
    user_answer=(200, {"id": "fio-fuzz"}),
)
@example(
    signed_in=True,
    pending={STATE: GENUINE},
    query=[("state", STATE), ("code", CODE), ("iss", ISSUER)],
    token_answer=(400, {"error": "invalid_grant", "error_description": f"code {CODE} was used"}),
    user_answer=(200, {"id": "fio-fuzz"}),
)
# A pending flow with an empty verifier (which the start view never writes) completes nothing.
@example(
    signed_in=True,
    pending={STATE: {**GENUINE, "verifier": ""}},
    query=[("state", STATE), ("code", CODE)],
    token_answer=(200, {"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 3600}),
    user_answer=(200, {"id": "fio-fuzz", "email": "fuzz@frame.example"}),
)
# A repeated code: the refusal must not echo the copy that was not sent (and was not redacted).
@example(
    signed_in=False,
    pending={STATE: GENUINE},
    query=[("state", STATE), ("code", CODE), ("code", STATE)],
    token_answer=(400, {"error": "invalid_grant", "error_description": f"code {CODE} was used"}),
    user_answer=(200, {"id": "fio-fuzz"}),
)
def test_any_callback_fails_cleanly_stores_only_its_own_flow_and_shows_no_secret(
    signed_in: bool,
    pending: Any,
    query: list[tuple[str, str]],
    token_answer: tuple[int, Any],
    user_answer: tuple[int, Any],
) -> None:
    check_callback(signed_in, pending, query, token_answer, user_answer)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(signed_in=st.booleans(), token_answer=token_answers, user_answer=user_answers)
def test_any_provider_answer_to_a_genuine_callback_fails_cleanly_and_shows_no_secret(
    signed_in: bool, token_answer: tuple[int, Any], user_answer: tuple[int, Any]
) -> None:
    query = [("state", STATE), ("code", CODE), ("iss", ISSUER)]
    check_callback(signed_in, {STATE: GENUINE}, query, token_answer, user_answer)


def check_callback(
    signed_in: bool,
    pending: Any,
    query: list[tuple[str, str]],
    token_answer: tuple[int, Any],
    user_answer: tuple[int, Any],
) -> None:
    """One callback: no server error, a grant stored only for the visitor's own genuine flow,
    and no secret shown anywhere."""
    with (
        override_settings(FRAMEIO_OAUTH=SETTINGS),
        transaction.atomic(),
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
    ):
        mock.post(TOKEN_URL, status=token_answer[0], json=token_answer[1])
        mock.get(USERINFO_URL, status=user_answer[0], json=user_answer[1])
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
            # surrogatepass: a lone surrogate reaches the view as the invalid UTF-8 it is.
            response = client.get(f"/frameio/callback/?{urlencode(query, errors='surrogatepass')}")
        shown = [response.content.decode(errors="replace"), *map(str, response.items())]
        stored = OAuthToken.objects.first()
        transaction.set_rollback(True)
    event(f"HTTP {response.status_code}{', stored' if stored else ''}")
    assert response.status_code in (302, 400, 403, 409, 502)
    if stored is not None:
        # Only the genuine flow's state completes (the last value is the one read), started by
        # this very visitor, from the configured issuer if it named one, with some code.
        given = dict(query)
        assert response.status_code == 302
        names = [name for name, _ in query]
        assert names.count("code") == names.count("state") == 1
        assert names.count("error") <= 1 and names.count("iss") <= 1
        assert given.get("state") == STATE and given.get("code") and not given.get("error")
        assert given.get("iss", ISSUER) == ISSUER
        flow = pending[STATE]
        # (No verifier is a flow started with PKCE off: the exchange then sends none.)
        assert flow.get("starter") == "self" and flow.get("verifier") in (VERIFIER, None)
        assert stored.user_id == (user.pk if user is not None else stored.user_id)
        assert stored.access_token == token_answer[1]["access_token"]
    for text in [*shown, *log.texts]:
        assert no_secret(text), text
