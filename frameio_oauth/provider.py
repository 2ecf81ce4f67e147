"""All HTTP to the authorization server, and nothing else.

Every call has a hard wall-clock deadline (``HTTP_TIMEOUT``, held at the socket by
:mod:`frameio_oauth.deadlines`) and a 1 MiB cap on the body, decoded or not, so a slow, endless
or huge answer cannot hang a worker. Answers are read by :mod:`frameio_oauth.answers` into
small dataclasses; every failure becomes a typed error from :mod:`frameio_oauth.exceptions`:

* ``invalid_grant`` → :class:`ReauthorizationRequired` (never retried)
* timeouts, connection errors, 5xx, 429, ``temporarily_unavailable`` → :class:`ProviderUnavailable`
* any other refusal or an unusable body → :class:`ProviderError`

Every function whose frame holds a token, code, verifier, client secret, form, header or body is
decorated with ``@sensitive_variables()`` (all of its locals): Django's error reports cleanse only
frames under a decorated function, and a list of names would miss the next local added.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import requests
from django.views.decorators.debug import sensitive_variables
from urllib3.exceptions import HTTPError as Urllib3Error

# Re-exported: callers know these as provider.TokenResponse and so on.
from .answers import MAX_EXPIRES_IN as MAX_EXPIRES_IN
from .answers import TokenResponse as TokenResponse
from .answers import UserInfo as UserInfo
from .answers import content_type, is_refusal, json_or_none, raise_for_error, secrets_of
from .answers import parse_token_payload as parse_token_payload
from .conf import conf
from .deadlines import Deadline, DeadlineAdapter
from .exceptions import ProviderError, ProviderUnavailable

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# The adapter alone, without a requests.Session: the session's per-call work (cookie jar,
# hooks, netrc and environment lookups, redirect handling) cost about 1.5 ms of wall time per
# call on our benchmark machine, and we want none of it: no cookies shared between users, no
# redirects that would re-send a code or refresh token elsewhere. The adapter keeps the
# connection pool, and holds each call's deadline at its sockets.
_adapter = DeadlineAdapter()
_DEFAULT_HEADERS = {
    **requests.utils.default_headers(),
    "User-Agent": f"frameio-oauth {requests.utils.default_user_agent()}",
    # Compressed answers are decoded here, under the size cap; better not to get any.
    "Accept-Encoding": "identity",
}
_READ_SIZE = 64 * 1024
# What a server that compresses all the same may use: zlib's window bits for each.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


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
    response, body = _post(conf.revoke_url, form)
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
    response, body = _send(
        "GET",
        conf.userinfo_url,
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
    response, body = _post(conf.token_url, form, deadline=deadline)
    payload = json_or_none(body)
    if response.status_code != 200 or not isinstance(payload, dict) or is_refusal(payload):
        secrets = secrets_of(form)
        raise_for_error(response, payload, what="token endpoint", secrets=secrets)
        shape = "a non-JSON body" if payload is None else "JSON that is not an object"
        raise ProviderError(
            f"token endpoint answered HTTP 200 with {shape} ({content_type(response, secrets)})"
        )
    return parse_token_payload(payload)


@sensitive_variables()
def _post(
    url: str, form: dict[str, str], *, deadline: Deadline | None = None
) -> tuple[requests.Response, bytes]:
    auth = None
    if conf.client_secret is not None:
        # RFC 6749 §2.3.1: form-urlencode both before Basic encodes them. Hydra (Frame.io) and
        # django-oauth-toolkit (the stand-in) decode so; for ids and secrets made only of
        # letters, digits and "-._~" (the ones providers issue) this changes nothing.
        auth = requests.auth.HTTPBasicAuth(
            quote_plus(conf.client_id, safe=""), quote_plus(conf.client_secret, safe="")
        )
    else:
        form = {**form, "client_id": conf.client_id}
    return _send(
        "POST", url, data=form, auth=auth, headers={"Accept": "application/json"}, deadline=deadline
    )


@sensitive_variables()
def _send(
    method: str, url: str, *, deadline: Deadline | None = None, **kwargs: Any
) -> tuple[requests.Response, bytes]:
    """One request under a hard deadline, body capped. Returns the response and its body.
    ``deadline`` lets several calls share one ``HTTP_TIMEOUT``; by default each has its own."""
    if deadline is None:
        deadline = Deadline(conf.http_timeout)
    budget = deadline.seconds
    if deadline.passed():
        raise _timed_out(method, url, budget)
    headers = {**_DEFAULT_HEADERS, **kwargs.pop("headers", {})}
    proxies, verify = _environment_for(url)
    with deadline:
        try:
            prepared = _prepare(method, url, headers, kwargs.get("data"), kwargs.get("auth"))
            response = _adapter.send(
                prepared,
                stream=True,
                # Per socket operation, where the deadline's watchdog does not reach (SOCKS).
                timeout=max(deadline.remaining(), 0.001),
                proxies=proxies,
                verify=verify,
            )
        except requests.RequestException as exc:
            if deadline.tripped or isinstance(exc, requests.Timeout):
                raise _timed_out(method, url, budget) from exc
            raise ProviderUnavailable(
                f"{method} {_origin(url)} failed: {type(exc).__name__}"
            ) from exc
        try:
            body = _read_body(response, deadline, method, url)
        finally:
            response.close()
    logger.debug("%s %s answered HTTP %s", method, _origin(url), response.status_code)
    return response, body


def _timed_out(method: str, url: str, budget: float) -> ProviderUnavailable:
    return ProviderUnavailable(f"{method} {_origin(url)} timed out at its {budget:g} s deadline")


@sensitive_variables()
def _prepare(
    method: str,
    url: str,
    headers: dict[str, str],
    data: dict[str, str] | None,
    auth: requests.auth.AuthBase | None,
) -> requests.PreparedRequest:
    """``requests.Request(...).prepare()`` without the steps these calls never need: no
    cookies (the cookie jar machinery cost more than anything else in preparing), no hooks,
    and the URL parsed and normalised once per URL rather than on every call."""
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.url = _prepared_url(url)
    if data is not None:
        # Encoded here: requests' own form encoding is generic and cost twice as much.
        headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    prepared.prepare_headers(headers)
    prepared.prepare_body(None if data is None else urlencode(data), None)
    # As requests does: no auth given, but user:password in the URL, means HTTP Basic.
    prepared.prepare_auth(auth, url)
    return prepared


@lru_cache(maxsize=64)
def _prepared_url(url: str) -> str:
    probe = requests.PreparedRequest()
    probe.prepare_url(url, None)
    assert probe.url is not None
    return probe.url


@lru_cache(maxsize=64)
def _environment_for_origin(origin: str) -> tuple[dict[str, str], bool | str]:
    proxies = requests.utils.get_environ_proxies(origin)
    verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return proxies, verify


def _environment_for(url: str) -> tuple[dict[str, str], bool | str]:
    """Proxies (HTTPS_PROXY, NO_PROXY...) and CA bundle from the environment, as requests
    applies them, read once per origin per process."""
    parts = urlsplit(url)
    return _environment_for_origin(f"{parts.scheme}://{parts.netloc}")


@sensitive_variables()
def _read_body(response: requests.Response, deadline: Deadline, method: str, url: str) -> bytes:
    raw = response.raw
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _over_cap(method, url)
    inflater = _inflater(response, method, url)
    # Without a length or chunks, a body ends where the connection does: a cut at the deadline
    # would look like its end.
    framed = raw.length_remaining is not None or raw.chunked
    chunks: list[bytes] = []
    received = size = 0
    try:
        while True:
            if deadline.passed():
                raise _timed_out(method, url, deadline.seconds)
            data = raw.read1(_READ_SIZE, decode_content=False)
            if not data:
                if deadline.tripped and not framed:
                    raise _timed_out(method, url, deadline.seconds)
                break
            received += len(data)
            if inflater is not None and received <= MAX_BODY_BYTES:
                data = _inflate(inflater, data, MAX_BODY_BYTES - size, method, url)
            size += len(data)
            if received > MAX_BODY_BYTES or size > MAX_BODY_BYTES:
                raise _over_cap(method, url)
            chunks.append(data)
            if raw.length_remaining == 0:
                break  # all of Content-Length is in: no further read to be told so
    except (requests.RequestException, Urllib3Error, OSError) as exc:
        if deadline.tripped:
            raise _timed_out(method, url, deadline.seconds) from exc
        raise ProviderUnavailable(
            f"{method} {_origin(url)} failed while reading: {type(exc).__name__}"
        ) from exc
    if inflater is not None and not inflater.eof:
        raise ProviderError(f"{method} {_origin(url)} sent a compressed body that ends too soon")
    return b"".join(chunks)


def _over_cap(method: str, url: str) -> ProviderError:
    return ProviderError(f"{method} {_origin(url)} sent a body over {MAX_BODY_BYTES} bytes")


def _inflater(response: requests.Response, method: str, url: str) -> zlib._Decompress | None:
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise ProviderError(
            f"{method} {_origin(url)} sent a body in an unknown encoding {encoding[:40]!r}"
        )
    return zlib.decompressobj(wbits)


def _inflate(inflater: zlib._Decompress, data: bytes, room: int, method: str, url: str) -> bytes:
    # At most one byte over what the cap leaves, however well the data compresses: a
    # "compression bomb" fails at the cap without being inflated any further.
    try:
        return inflater.decompress(data, room + 1)
    except zlib.error as exc:
        raise ProviderError(
            f"{method} {_origin(url)} sent a compressed body that does not decompress"
        ) from exc


def _origin(url: str) -> str:
    # Host and path only: query strings can carry secrets.
    return url.split("?", 1)[0]
