"""Property tests of the token endpoint's answers: whatever status, headers and body come back,
a refresh either parses them or raises one of the app's typed errors; no secret the request or
the answer carried shows up in the error or in any log record; and a refresh that stores the
answer leaves the row in a state it can go on from."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any

import responses
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from frameio_oauth import provider, services
from frameio_oauth.exceptions import FrameioOAuthError
from frameio_oauth.models import OAuthToken
from tests.support.frameio import TOKEN_URL
from tests.support.logs import logged
from tests.support.settings import FRAMEIO_OAUTH

REFRESH = "RT-fuzz-3f9a1c"
# Tokens the answer may carry: they must not show either.
NEW_ACCESS, NEW_REFRESH = "AT-answer-77d1", "RT-answer-88e2"
CLIENT_SECRET = str(FRAMEIO_OAUTH["CLIENT_SECRET"])
# What the request carried; an answer's own tokens are added per answer (secrets_of_answer).
SECRETS = (REFRESH, CLIENT_SECRET, provider.basic_credentials("test-client", CLIENT_SECRET))

FIELDS = ["access_token", "refresh_token", "expires_in", "token_type", "scope", "error",
          "error_description", "error_uri"]  # fmt: skip
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(["invalid_grant", "invalid_scope", "temporarily_unavailable", ""]),
    # Providers echo what they were sent: the secrets, plain and percent-encoded.
    st.sampled_from([REFRESH, CLIENT_SECRET, "RT-fuzz%2D3f9a1c", f"bad token {REFRESH}!"]),
    # New tokens, well formed or not (RFC 6749 wants printable ASCII).
    st.sampled_from([NEW_ACCESS, NEW_REFRESH, NEW_ACCESS + "\u20ac", NEW_REFRESH + "\ud800"]),
)
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), children,
                        max_size=6),
    ),
    max_leaves=12,
)  # fmt: skip
bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
)
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Retry-After", "Content-Encoding", "WWW-Authenticate"]),
    st.one_of(
        st.sampled_from(["application/json", "text/html", "gzip", "deflate", "120", "-1"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.integers(min_value=200, max_value=599), headers=headers, body=bodies)
# A refusal whose unusable token is echoed in its own error text.
@example(
    status=200,
    headers={},
    body=json.dumps(
        {"access_token": NEW_ACCESS + "\u20ac", "error": NEW_ACCESS + "\u20ac"}
    ).encode(),
)
def test_any_answer_parses_or_raises_a_typed_error_that_quotes_no_secret(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    with responses.RequestsMock() as mock, logged("frameio_oauth") as log:
        mock.post(TOKEN_URL, status=status, headers=headers, body=body)
        try:
            answer: Any = provider.refresh_grant(REFRESH, scope="account.read offline")
        except FrameioOAuthError as exc:
            answer = exc
    shown = [str(answer), repr(answer), *(r.getMessage() for r in log.records)]
    for text in shown:
        for secret in secrets_of_answer(body):
            assert secret not in text


def secrets_of_answer(body: bytes) -> list[str]:
    """What must not show: the request's secrets, and the tokens the answer itself carries."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    carried = []
    if isinstance(payload, dict):
        carried = [payload.get(name) for name in ("access_token", "refresh_token")]
    # A secret is only itself at full length; "" or one character would match anything.
    return [*SECRETS, *(value for value in carried if isinstance(value, str) and len(value) > 3)]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(status=st.integers(min_value=200, max_value=599), body=bodies)
@example(
    status=200, body=json.dumps({"access_token": NEW_ACCESS, "refresh_token": "x\ud800"}).encode()
)
@example(status=200, body=json.dumps({"access_token": NEW_ACCESS + "\u20ac"}).encode())
def test_a_refresh_stores_any_answer_only_in_a_state_it_can_go_on_from(
    status: int, body: bytes, user: Any, make_token: Any
) -> None:
    token = make_token(
        user, refresh_token=REFRESH, expires_at=timezone.now() + timedelta(minutes=2)
    )
    try:
        with responses.RequestsMock() as mock, logged("frameio_oauth") as log:
            mock.post(TOKEN_URL, status=status, body=body)
            with contextlib.suppress(FrameioOAuthError):
                services.refresh(token.pk)
        row = OAuthToken.objects.get(pk=token.pk)
        texts = [row.last_error, *(r.getMessage() for r in log.records)]
    finally:
        OAuthToken.objects.filter(pk=token.pk).delete()
    # Whatever came back: the secrets it can go on with are printable ASCII, and a refresh
    # token is either the one it had (nothing rotated), a new one, or none (re-authorize).
    for secret in (row.access_token, row.refresh_token):
        assert secret is None or (secret.isascii() and secret.isprintable())
    if row.status == OAuthToken.Status.ACTIVE and row.failure_count == 0:
        assert row.refresh_token in (REFRESH, NEW_REFRESH, None)
    for text in texts:
        for secret in secrets_of_answer(body):
            assert secret not in text
