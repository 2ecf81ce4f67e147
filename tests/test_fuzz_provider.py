"""Property tests of the token endpoint's answers: whatever status, headers and body come back,
a refresh either parses them or raises one of the app's typed errors, and no secret the
request carried shows up in the error or in any log record."""

from __future__ import annotations

import json
from typing import Any

import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frameio_oauth import provider
from frameio_oauth.exceptions import FrameioOAuthError
from tests.support.frameio import TOKEN_URL
from tests.support.logs import logged
from tests.support.settings import FRAMEIO_OAUTH

REFRESH = "RT-fuzz-3f9a1c"
CLIENT_SECRET = str(FRAMEIO_OAUTH["CLIENT_SECRET"])
SECRETS = (REFRESH, CLIENT_SECRET, provider.basic_credentials("test-client", CLIENT_SECRET))

FIELDS = ["access_token", "refresh_token", "expires_in", "token_type", "scope", "error",
          "error_description", "error_uri"]  # fmt: skip
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["invalid_grant", "invalid_scope", "temporarily_unavailable", ""]),
    # Providers echo what they were sent: the secrets, plain and percent-encoded.
    st.sampled_from([REFRESH, CLIENT_SECRET, "RT-fuzz%2D3f9a1c", f"bad token {REFRESH}!"]),
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
        for secret in SECRETS:
            assert secret not in text
