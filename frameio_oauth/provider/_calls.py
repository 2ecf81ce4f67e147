"""The calls to the authorization server: the authorization request, the code exchange, the
refresh, the revocation and the user info. Each turns its answer into a small type or a typed
error (``invalid_grant`` -> ReauthorizationRequired, never retried; time-outs, connection
errors, 5xx, 429, ``temporarily_unavailable`` -> ProviderUnavailable; any other refusal or an
unusable answer -> ProviderError).

Every function whose frame holds a token, code, verifier or secret hides all its locals from
Django's error reports (``@sensitive_variables()``): a list of names would miss the next one.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.views.decorators.debug import sensitive_variables

from ..conf import conf
from ..exceptions import ProviderError
from ..telemetry import Endpoint
from ._deadline import Deadline
from ._parse import (
    TokenResponse,
    UserInfo,
    content_type,
    is_refusal,
    json_or_none,
    parse_token_payload,
    raise_for_error,
    secrets_of,
)
from ._transport import post, send

logger = logging.getLogger("frameio_oauth.provider")

_TOKEN_FIELDS = ("access_token", "refresh_token")


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str = field(repr=False)
    redirect_uri: str
    code_verifier: str | None = field(default=None, repr=False)


def make_code_verifier() -> str:
    # 64 random bytes → 86 urlsafe characters, inside RFC 7636's 43-128.
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def build_authorization_request(redirect_uri: str) -> AuthorizationRequest:
    state = secrets.token_urlsafe(32)
    params = {
        "response_type": "code",
        "client_id": conf.client_id,
        "redirect_uri": redirect_uri,
        "scope": conf.scope_string,
        "state": state,
    }
    verifier = None
    if conf.pkce:
        verifier = make_code_verifier()
        params["code_challenge"] = code_challenge(verifier)
        params["code_challenge_method"] = "S256"
    separator = "&" if "?" in conf.authorize_url else "?"
    url = f"{conf.authorize_url}{separator}{urlencode(params)}"
    return AuthorizationRequest(
        url=url, state=state, redirect_uri=redirect_uri, code_verifier=verifier
    )


@sensitive_variables()
def exchange_code(code: str, *, redirect_uri: str, code_verifier: str | None) -> TokenResponse:
    """Trade an authorization code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.5)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier:
        form["code_verifier"] = code_verifier
    return _token_request(form)


@sensitive_variables()
def refresh_grant(refresh_token: str, *, scope: str | None = None) -> TokenResponse:
    """Use a refresh token (RFC 6749 §6); ``scope=None`` asks for the scope as granted. The
    caller must hold the row lock.

    A provider that answers ``invalid_scope`` is asked once more without ``scope``: a refused
    request spends no refresh token, and omitting it cannot ask for more than was granted.
    Both calls share one ``HTTP_TIMEOUT``, so the lock is held no longer than for one.
    """
    deadline = Deadline(conf.http_timeout)
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope is None:
        return _token_request(form, deadline=deadline)
    try:
        return _token_request({**form, "scope": scope}, deadline=deadline)
    except ProviderError as exc:
        if exc.code != "invalid_scope":
            raise
        logger.warning("token endpoint refused the scope %r; refreshing as granted", scope)
    return _token_request(form, deadline=deadline)


@sensitive_variables()
def revoke(token: str, *, token_type_hint: str = "refresh_token") -> None:
    """Revoke a token at the provider (RFC 7009). 200 means revoked or already unknown."""
    form = {"token": token, "token_type_hint": token_type_hint}
    response, body = post(conf.revoke_url, form, endpoint=Endpoint.REVOKE)
    if response.status_code == 200:
        return
    payload = json_or_none(body)
    raise_for_error(response, payload, what="revocation endpoint", secrets=secrets_of(form))


@sensitive_variables()
def revoke_grant(*, refresh_token: str | None, access_token: str) -> None:
    """Revoke a whole grant: by its refresh token when there is one (which ends the chain and
    its access tokens), else by the access token."""
    if refresh_token:
        revoke(refresh_token, token_type_hint="refresh_token")
    else:
        revoke(access_token, token_type_hint="access_token")


@sensitive_variables()
def fetch_userinfo(access_token: str) -> UserInfo:
    response, body = send(
        "GET",
        conf.userinfo_url,
        endpoint=Endpoint.USERINFO,
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
    )
    payload = json_or_none(body)
    if response.status_code != 200 or not isinstance(payload, dict):
        raise_for_error(
            response, payload, what="user-info endpoint", secrets=secrets_of({}, access_token)
        )
        raise ProviderError("user-info endpoint returned a non-JSON body")
    envelope = conf.preset.userinfo_envelope
    if envelope is not None and isinstance(payload.get(envelope), dict):
        payload = payload[envelope]
    user_id = payload.get("id") or payload.get("sub")
    if not isinstance(user_id, str | int) or isinstance(user_id, bool) or user_id == "":
        raise ProviderError("user-info answer has no user id")
    email = payload.get("email")
    name = payload.get("name")
    return UserInfo(
        id=str(user_id),
        email=email if isinstance(email, str) else "",
        name=name if isinstance(name, str) else "",
    )


@sensitive_variables()
def _token_request(form: dict[str, str], *, deadline: Deadline | None = None) -> TokenResponse:
    response, body = post(conf.token_url, form, endpoint=Endpoint.TOKEN, deadline=deadline)
    payload = json_or_none(body)
    if response.status_code != 200 or not isinstance(payload, dict) or is_refusal(payload):
        # A refusal may still carry (unusable) tokens, and echo them in its error text.
        carried = [payload.get(name) for name in _TOKEN_FIELDS] if isinstance(payload, dict) else []
        secrets = secrets_of(form, *(value for value in carried if isinstance(value, str)))
        raise_for_error(response, payload, what="token endpoint", secrets=secrets)
        shape = "a non-JSON body" if payload is None else "JSON that is not an object"
        raise ProviderError(
            f"token endpoint answered HTTP 200 with {shape} ({content_type(response, secrets)})"
        )
    return parse_token_payload(payload)
