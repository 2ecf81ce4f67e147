"""HTTP to the authorization server: one request under one deadline, its body read under a
1 MiB cap (decoded or not), without requests.Session's per-call work."""

from __future__ import annotations

import logging
import os
import zlib
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import requests
from django.views.decorators.debug import sensitive_variables
from urllib3.exceptions import HTTPError as Urllib3Error

from .. import telemetry
from ..conf import conf
from ..exceptions import ProviderError, ProviderUnavailable
from ._deadline import Deadline, DeadlineAdapter

logger = logging.getLogger("frameio_oauth.provider")

MAX_BODY_BYTES = 1024 * 1024
# The adapter alone, no requests.Session: no cookies shared between users, no redirect that
# would re-send a secret, and none of the session's per-call cost (docs/design.md).
# Kept connections per host in one process: a thread-pool worker runs up to its concurrency
# in calls at once, and requests' default of 10 made every call beyond that open (a TLS
# handshake) and drop a connection of its own (docs/benchmarks.md, the soak).
POOL_SIZE = 100
_adapter = DeadlineAdapter(pool_maxsize=POOL_SIZE)
_DEFAULT_HEADERS = {
    **requests.utils.default_headers(),
    "User-Agent": f"frameio-oauth {requests.utils.default_user_agent()}",
    # Compressed answers are decoded here, under the size cap; better not to get any.
    "Accept-Encoding": "identity",
}
_READ_SIZE = 64 * 1024
# What a server that compresses all the same may use: zlib's window bits for each.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@sensitive_variables()
def post(
    url: str,
    form: dict[str, str],
    *,
    endpoint: telemetry.Endpoint,
    deadline: Deadline | None = None,
) -> tuple[requests.Response, bytes]:
    auth = None
    if conf.client_secret is not None:
        # RFC 6749 §2.3.1: both form-urlencoded before Basic encodes them (a no-op for the
        # letters, digits and "-._~" providers issue).
        auth = requests.auth.HTTPBasicAuth(
            quote_plus(conf.client_id, safe=""), quote_plus(conf.client_secret, safe="")
        )
    else:
        form = {**form, "client_id": conf.client_id}
    return send(
        "POST",
        url,
        endpoint=endpoint,
        data=form,
        auth=auth,
        headers={"Accept": "application/json"},
        deadline=deadline,
    )


@sensitive_variables()
def send(
    method: str,
    url: str,
    *,
    endpoint: telemetry.Endpoint,
    deadline: Deadline | None = None,
    **kwargs: Any,
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
    with telemetry.provider_call(endpoint, method, url) as call, deadline:
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
        except UnicodeError:
            # A value that cannot go into a request line, header or form (its text unquoted:
            # it may be a secret); the same request would fail the same way again.
            raise ProviderError(f"{method} {_origin(url)} could not be encoded") from None
        call.status_code = response.status_code
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


def reread_environment() -> None:
    """Read proxies and the CA bundle from the environment again on the next call (they are
    read once per origin per process): for a process whose environment changed."""
    _environment_for_origin.cache_clear()


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
            # A watched call reads until the watchdog cuts it, so an answer already in the
            # socket is never thrown away for being read late; an unwatched one (SOCKS) stops.
            if not deadline.watched and deadline.passed():
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
