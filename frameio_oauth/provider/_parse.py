"""The authorization server's answers: read, checked, and made safe to quote.

A 200 token answer becomes a :class:`TokenResponse`, keeping everything it can use (see
:func:`parse_token_payload`); a refusal becomes the typed error of
:mod:`frameio_oauth.exceptions`. Provider text that goes into a message (``error``,
``error_description``, a content type) is printable only, cut short, and has every secret of
the request replaced by ``[redacted]``, since a provider may echo what it was sent.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import requests
from django.views.decorators.debug import sensitive_variables

from ..conf import conf
from ..exceptions import (
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    ReauthorizationRequired,
)

# The provider module's logger: these warnings are about what the provider answered.
logger = logging.getLogger("frameio_oauth.provider")

TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    # The answer carried a refresh token that cannot be used (see parse_token_payload).
    refresh_token_unusable: bool = False


@dataclass(frozen=True)
class UserInfo:
    id: str
    email: str = ""
    name: str = ""


def is_refusal(payload: dict[str, Any]) -> bool:
    """Whether a 200 token answer is a refusal: it names an error and carries no access token.

    An ``error`` that is null or empty names nothing; one next to a usable access token is
    outweighed by it (see :func:`parse_token_payload`): the provider may have rotated the refresh
    token already, and refusing the answer would lose its successor.
    """
    error = payload.get("error")
    return isinstance(error, str) and bool(error) and not _usable(payload.get("access_token"))


# RFC 6749 appendix A: an access or refresh token is 1*VSCHAR, printable ASCII; anything else
# cannot go into an Authorization header or a form and would break every later call.
_VSCHAR = re.compile(r"[\x20-\x7e]+")


def _usable(token: Any) -> TypeGuard[str]:
    return isinstance(token, str) and _VSCHAR.fullmatch(token) is not None


@sensitive_variables()
def parse_token_payload(payload: dict[str, Any]) -> TokenResponse:
    """The token endpoint's 200 answer, as far as it can be used.

    Only a missing or unusable ``access_token`` makes the answer a :class:`ProviderError`.
    Anything else doubtful is replaced by a safe value and logged: by the time we read this
    answer the provider may already have rotated the refresh token we sent, so refusing the
    answer would throw away the only copy of its successor and send the spent one again.
    """
    access_token = payload.get("access_token")
    if not _usable(access_token):
        raise ProviderError("token endpoint answer has no usable access_token")
    error = payload.get("error")
    if isinstance(error, str) and error:
        # Not the error's text: it is the provider's, and may echo what the request carried.
        logger.warning("token endpoint answer has an error as well as tokens: keeping the tokens")
    refresh_token = payload.get("refresh_token")
    refresh_token_unusable = False
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        # As if none was sent: a refresh keeps the refresh token it already has.
        _doubtful("refresh_token", refresh_token, "treated as absent")
        refresh_token = None
    elif refresh_token is not None and not _usable(refresh_token):
        # Sent, so the one presented may be spent already; and this one cannot be used.
        logger.error(
            "token endpoint answer has a refresh_token that is not printable ASCII: the grant "
            "cannot be refreshed and will need re-authorization when its access token expires"
        )
        refresh_token, refresh_token_unusable = None, True
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
        refresh_token_unusable=refresh_token_unusable,
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


def json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return None


@sensitive_variables()
def raise_for_error(
    response: requests.Response, payload: Any, *, what: str, secrets: tuple[str, ...]
) -> None:
    """Raise the typed error for a refusal. ``secrets`` are what the request carried; the
    provider's own words may echo them, so they are cut out of every message."""
    status = response.status_code
    raw_error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(raw_error, str):
        raw_error = None  # a list or an object names no error (and cannot be looked up)
    error = _provider_text(raw_error, secrets, 64) if raw_error is not None else None
    if status == 429 or status >= 500 or raw_error in TRANSIENT_OAUTH_ERRORS:
        transient = RateLimited if status == 429 else ProviderUnavailable
        raise transient(
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
            f"({content_type(response, secrets)})"
        )
    if status != 200:
        raise ProviderError(f"{what} answered HTTP {status}")


# Form fields whose values are secrets; the client secret is added from the settings.
_SECRET_FIELDS = ("code", "code_verifier", "refresh_token", "token", "client_secret")
REDACTED = "[redacted]"


def secrets_of(form: dict[str, str], *extra: str) -> tuple[str, ...]:
    """Every secret a request carried: its secret form fields, ``extra`` (a bearer token)
    and the client secret of its HTTP Basic header, alone and as the header's base64."""
    found = [form[name] for name in _SECRET_FIELDS if form.get(name)]
    found.extend(value for value in extra if value)
    if conf.client_secret:
        found.extend((conf.client_secret, basic_credentials(conf.client_id, conf.client_secret)))
    return tuple(found)


def basic_credentials(client_id: str, client_secret: str) -> str:
    """The credentials of the HTTP Basic header as sent (RFC 6749 §2.3.1: each part
    form-urlencoded, then base64): a provider may echo the header, and it decodes to the secret."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return base64.b64encode(pair.encode("latin-1")).decode("ascii")


@sensitive_variables()
def _provider_text(text: str, secrets: tuple[str, ...], limit: int) -> str:
    """Provider text made fit for a message: printable only, every secret of the request
    replaced by [redacted] (also percent-encoded, as a provider might echo it), then cut."""
    cleaned = "".join(ch for ch in text if ch.isprintable())
    # Printable first (a control character cannot hide a secret), longest secret first (one
    # inside another goes whole), cut last (no prefix of a secret survives).
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


def content_type(response: requests.Response, secrets: tuple[str, ...]) -> str:
    value = response.headers.get("Content-Type", "no content type").split(";")[0]
    return _provider_text(value, secrets, 64)
