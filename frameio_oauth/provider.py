"""All HTTP to the authorization server, and nothing else.

Every call has a hard wall-clock deadline (``HTTP_TIMEOUT``) and a 1 MiB cap on the body, so a
slow or huge answer cannot hang a worker. Answers are validated into small dataclasses; every
failure becomes a typed error from :mod:`frameio_oauth.exceptions`:

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
import json
import logging
import math
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlencode, urlsplit

import requests
from django.views.decorators.debug import sensitive_variables
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import Timeout

from .conf import conf
from .exceptions import ProviderError, ProviderUnavailable, ReauthorizationRequired

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
# The adapter alone, without a requests.Session: the session's per-call work (cookie jar,
# hooks, netrc and environment lookups, redirect handling) cost about 1.5 ms of wall time per
# call on our benchmark machine, and we want none of it: no cookies shared between users, no
# redirects that would re-send a code or refresh token elsewhere. The adapter keeps the
# connection pool.
_adapter = requests.adapters.HTTPAdapter()
_DEFAULT_HEADERS = {
    **requests.utils.default_headers(),
    "User-Agent": f"frameio-oauth {requests.utils.default_user_agent()}",
}


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None


@dataclass(frozen=True)
class UserInfo:
    id: str
    email: str = ""
    name: str = ""


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
    """Use a refresh token once (RFC 6749 §6). The caller must hold the row lock."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    form["scope"] = scope or conf.scope_string
    return _token_request(form)


@sensitive_variables()
def revoke(token: str, *, token_type_hint: str = "refresh_token") -> None:
    """Revoke a token at the provider (RFC 7009). 200 means revoked or already unknown."""
    form = {"token": token, "token_type_hint": token_type_hint}
    response, body = _post(conf.revoke_url, form)
    if response.status_code == 200:
        return
    payload = _json_or_none(body)
    _raise_for_error(response, payload, what="revocation endpoint", secrets=_secrets_of(form))


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
    payload = _json_or_none(body)
    if response.status_code != 200 or not isinstance(payload, dict):
        _raise_for_error(
            response, payload, what="user-info endpoint", secrets=_secrets_of({}, access_token)
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
def _token_request(form: dict[str, str]) -> TokenResponse:
    response, body = _post(conf.token_url, form)
    payload = _json_or_none(body)
    if response.status_code != 200 or not isinstance(payload, dict) or "error" in payload:
        secrets = _secrets_of(form)
        _raise_for_error(response, payload, what="token endpoint", secrets=secrets)
        raise ProviderError(
            "token endpoint returned HTTP 200 with a non-JSON body "
            f"({_content_type(response, secrets)})"
        )
    return parse_token_payload(payload)


@sensitive_variables()
def parse_token_payload(payload: dict[str, Any]) -> TokenResponse:
    """The token endpoint's 200 answer, as far as it can be used.

    Only a missing or unusable ``access_token`` makes the answer a :class:`ProviderError`.
    Anything else doubtful is replaced by a safe value and logged: by the time we read this
    answer the provider may already have rotated the refresh token we sent, so refusing the
    answer would throw away the only copy of its successor and send the spent one again.
    """
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ProviderError("token endpoint answer has no access_token")
    refresh_token = payload.get("refresh_token")
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        # As if none was sent: a refresh keeps the refresh token it already has.
        _doubtful("refresh_token", refresh_token, "treated as absent")
        refresh_token = None
    token_type = payload.get("token_type")
    if token_type is None:
        token_type = "Bearer"
    elif not isinstance(token_type, str) or not token_type.strip():
        _doubtful("token_type", token_type, 'using "Bearer"')
        token_type = "Bearer"
    scope = payload.get("scope")
    if isinstance(scope, list):
        scope = conf.preset.scope_separator.join(str(item) for item in scope)
    elif scope is not None and not isinstance(scope, str):
        _doubtful("scope", scope, "keeping the stored scope")
        scope = None
    return TokenResponse(
        access_token=access_token,
        token_type=token_type,
        expires_in=_expires_in(payload.get("expires_in")),
        refresh_token=refresh_token,
        scope=scope,
    )


# Longer than any real access token lives; a bigger number is a provider bug, not a promise.
MAX_EXPIRES_IN = 366 * 24 * 3600
# "3600", " 3600 ", "3599.5": digits, at most one decimal point, nothing else.
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


def _expires_in(value: Any) -> int:
    """Seconds the new access token lives. A doubtful value becomes the preset's lifetime:
    refreshing too early is harmless, refreshing too late loses the grant."""
    lifetime = conf.preset.access_token_lifetime
    if value is None:
        return lifetime
    number: float | None = None
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        number = float(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value  # an int of any size: math.isfinite() would overflow on a huge one
    elif isinstance(value, float) and math.isfinite(value):
        number = value
    if number is None:
        _doubtful("expires_in", value, f"using the preset's {lifetime}s")
        return lifetime
    seconds = int(number)  # a fraction of a second is not worth refusing the answer over
    if seconds <= 0:
        _doubtful("expires_in", value, f"not positive; using the preset's {lifetime}s")
        return lifetime
    if seconds > MAX_EXPIRES_IN:
        _doubtful("expires_in", value, f"implausibly long; using the preset's {lifetime}s")
        return min(seconds, lifetime)
    if seconds != number:
        _doubtful("expires_in", value, f"not a whole number; using {seconds}s")
    return seconds


def _doubtful(name: str, value: Any, action: str) -> None:
    # The type, never the value: a misplaced field may hold a token. expires_in is the one
    # field whose value is safe and useful to show.
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    shown = repr(value)[:40] if name == "expires_in" and numeric else type(value).__name__
    logger.warning("token endpoint answer has an unusable %s (%s): %s", name, shown, action)


@sensitive_variables()
def _post(url: str, form: dict[str, str]) -> tuple[requests.Response, bytes]:
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
    return _send("POST", url, data=form, auth=auth, headers={"Accept": "application/json"})


@sensitive_variables()
def _send(method: str, url: str, **kwargs: Any) -> tuple[requests.Response, bytes]:
    """One request under a hard deadline, body capped. Returns the response and its body."""
    budget = conf.http_timeout
    deadline = time.monotonic() + budget
    headers = {**_DEFAULT_HEADERS, **kwargs.pop("headers", {})}
    proxies, verify = _environment_for(url)
    try:
        prepared = _prepare(method, url, headers, kwargs.get("data"), kwargs.get("auth"))
        # total= makes the wait for the headers use what the connect step left of the budget.
        response = _adapter.send(
            prepared,
            stream=True,
            # The adapter passes a urllib3 Timeout through as it is; its stubs don't say so.
            timeout=Timeout(total=budget),  # type: ignore[arg-type]
            proxies=proxies,
            verify=verify,
        )
    except requests.Timeout as exc:
        raise ProviderUnavailable(f"{method} {_origin(url)} timed out after {budget}s") from exc
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"{method} {_origin(url)} failed: {type(exc).__name__}") from exc
    try:
        body = _read_body(response, deadline, method, url)
    finally:
        response.close()
    logger.debug("%s %s answered HTTP %s", method, _origin(url), response.status_code)
    return response, body


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
def _read_body(response: requests.Response, deadline: float, method: str, url: str) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ProviderError(f"{method} {_origin(url)} sent a body over {MAX_BODY_BYTES} bytes")
    # Only an unencoded body's length is Content-Length; a decoder may still hold bytes.
    identity = response.headers.get("Content-Encoding", "identity").lower() == "identity"
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderUnavailable(f"{method} {_origin(url)} exceeded its deadline")
            _set_read_timeout(response, remaining)
            # read1 returns what one recv() gave, so the deadline is checked between recvs.
            chunk = response.raw.read1(64 * 1024, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ProviderError(
                    f"{method} {_origin(url)} sent a body over {MAX_BODY_BYTES} bytes"
                )
            chunks.append(chunk)
            if identity and response.raw.length_remaining == 0:
                break  # all of Content-Length is in: no second timed read to be told so
    except (requests.RequestException, Urllib3Error, OSError) as exc:
        raise ProviderUnavailable(
            f"{method} {_origin(url)} failed while reading: {type(exc).__name__}"
        ) from exc
    return b"".join(chunks)


def _set_read_timeout(response: requests.Response, remaining: float) -> None:
    # Each recv() may block at most until the deadline, so a server that drips one byte at a
    # time cannot stretch the call past HTTP_TIMEOUT.
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(remaining, 0.001))


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return None


@sensitive_variables()
def _raise_for_error(
    response: requests.Response, payload: Any, *, what: str, secrets: tuple[str, ...]
) -> None:
    """Raise the typed error for a refusal. ``secrets`` are what the request carried; the
    provider's own words may echo them, so they are cut out of every message."""
    status = response.status_code
    raw_error = payload.get("error") if isinstance(payload, dict) else None
    error = _provider_text(raw_error, secrets, 64) if isinstance(raw_error, str) else None
    if status == 429 or status >= 500 or raw_error in TRANSIENT_OAUTH_ERRORS:
        raise ProviderUnavailable(
            f"{what} answered HTTP {status}" + (f" ({error})" if error else ""),
            retry_after=_retry_after(response),
        )
    if raw_error == "invalid_grant":
        raise ReauthorizationRequired(
            f"{what} answered invalid_grant{_description(payload, secrets)}"
        )
    if error is not None:
        raise ProviderError(
            f"{what} answered HTTP {status} {error}{_description(payload, secrets)}", code=error
        )
    if payload is None and status != 200:
        raise ProviderError(
            f"{what} answered HTTP {status} with a non-JSON body "
            f"({_content_type(response, secrets)})"
        )
    if status != 200:
        raise ProviderError(f"{what} answered HTTP {status}")


# Form fields whose values are secrets; the client secret is added from the settings.
_SECRET_FIELDS = ("code", "code_verifier", "refresh_token", "token", "client_secret")
REDACTED = "[redacted]"


def _secrets_of(form: dict[str, str], *extra: str) -> tuple[str, ...]:
    """Every secret a request carried: its secret form fields, ``extra`` (a bearer token)
    and the client secret of its HTTP Basic header."""
    found = [form[name] for name in _SECRET_FIELDS if form.get(name)]
    found.extend(value for value in extra if value)
    if conf.client_secret:
        found.append(conf.client_secret)
    return tuple(found)


@sensitive_variables()
def _provider_text(text: str, secrets: tuple[str, ...], limit: int) -> str:
    """Provider text made fit for a message: printable only, every secret of the request
    replaced by [redacted] (also percent-encoded, as a provider might echo it), then cut."""
    cleaned = "".join(ch for ch in text if ch.isprintable())
    # Printable-only first, so a control character inside an echoed secret cannot hide it;
    # cut last, so no prefix of a secret survives the cut. Longest first, so a secret that
    # contains another is replaced whole.
    forms = {form for secret in secrets for form in _spellings(secret)}
    for form in sorted(forms, key=len, reverse=True):
        cleaned = cleaned.replace(form, REDACTED)
    # Some other partial encoding of a secret: drop the provider's text altogether.
    decoded = (unquote(cleaned), unquote_plus(cleaned))
    if any(form in candidate for form in forms for candidate in decoded):
        return REDACTED
    return cleaned[:limit]


def _spellings(secret: str) -> set[str]:
    printable = "".join(ch for ch in secret if ch.isprintable())
    spellings = {printable, quote(printable, safe=""), quote_plus(printable, safe="")}
    return {spelling for spelling in spellings if spelling}


def _description(payload: Any, secrets: tuple[str, ...]) -> str:
    text = payload.get("error_description") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text:
        return ""
    # Provider text, shown to operators and stored in last_error: short, printable, no secret.
    return f": {_provider_text(text, secrets, 120)}"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _content_type(response: requests.Response, secrets: tuple[str, ...]) -> str:
    value = response.headers.get("Content-Type", "no content type").split(";")[0]
    return _provider_text(value, secrets, 64)


def _origin(url: str) -> str:
    # Host and path only: query strings can carry secrets.
    return url.split("?", 1)[0]
