"""All HTTP to the authorization server, and the reading of its answers into small types.

Every call has a wall-clock deadline (``HTTP_TIMEOUT``) held at its socket and a 1 MiB cap on
the body; every failure is a typed error from :mod:`frameio_oauth.exceptions`.
"""

from __future__ import annotations

from ._calls import (
    AuthorizationRequest,
    build_authorization_request,
    code_challenge,
    exchange_code,
    fetch_userinfo,
    make_code_verifier,
    refresh_grant,
    revoke,
    revoke_grant,
)
from ._parse import (
    MAX_EXPIRES_IN,
    REDACTED,
    TokenResponse,
    UserInfo,
    basic_credentials,
    parse_token_payload,
)
from ._transport import MAX_BODY_BYTES, POOL_SIZE, reread_environment

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_EXPIRES_IN",
    "POOL_SIZE",
    "REDACTED",
    "AuthorizationRequest",
    "TokenResponse",
    "UserInfo",
    "basic_credentials",
    "build_authorization_request",
    "code_challenge",
    "exchange_code",
    "fetch_userinfo",
    "make_code_verifier",
    "parse_token_payload",
    "refresh_grant",
    "reread_environment",
    "revoke",
    "revoke_grant",
]
