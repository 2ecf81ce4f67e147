"""The two small DOT hooks that make it behave like Frame.io.

Loaded by DOT through import strings (OAUTH2_VALIDATOR_CLASS / OAUTH2_BACKEND_CLASS), so this
module may import models: it is only imported once the app registry is ready.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from django.http import HttpRequest
from oauth2_provider.oauth2_backends import OAuthLibCore
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.common import urlencode

from .config import current

_SCOPE_SEPARATORS = re.compile(r"[\s,]+")


def normalise_scope(value: str) -> str:
    """Turn a comma- or space-separated scope string into oauthlib's single-space form.

    oauthlib splits on exactly one space (``scope.strip().split(" ")``), so Adobe IMS's
    "openid,offline_access" would otherwise be read as one unknown scope.
    """
    return " ".join(part for part in _SCOPE_SEPARATORS.split(value) if part)


class StandinOAuthLibCore(OAuthLibCore):
    """Normalises the ``scope`` parameter before oauthlib parses the request.

    Done here rather than in the validator because oauthlib reads ``scope`` in several places
    (authorization request, refresh-token narrowing) and only some of them go through
    ``validate_scopes``.
    """

    def _get_escaped_full_path(self, request: HttpRequest) -> str:
        uri: str = super()._get_escaped_full_path(request)
        parts = urlsplit(uri)
        params = parse_qsl(parts.query, keep_blank_values=True)
        if not any(key == "scope" for key, _ in params):
            # Leave every other request byte-for-byte as DOT built it.
            return uri
        params = [(key, normalise_scope(v) if key == "scope" else v) for key, v in params]
        return urlunsplit(parts._replace(query=urlencode(params)))

    def extract_body(self, request: HttpRequest) -> list[tuple[str, str]]:
        body: list[tuple[str, str]] = super().extract_body(request)
        return [(key, normalise_scope(v) if key == "scope" else v) for key, v in body]


class StandinOAuth2Validator(OAuth2Validator):
    """Issues a refresh token only when an offline scope was granted, as Frame.io does, and
    writes the granted scopes in the answer the way the server it plays does."""

    def save_bearer_token(
        self, token: dict[str, Any], request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> Any:
        # A refresh-token grant always keeps its (rotated) refresh token: its family was only
        # created because offline was granted, and dropping it here would make DOT skip the
        # rotation and leave the presented refresh token valid forever.
        shape = current().mode.shape
        if "refresh_token" in token and request.grant_type != "refresh_token":
            granted = set(str(token.get("scope", "")).split())
            if not granted & shape.offline_scopes:
                # oauthlib serialises this same dict after saving, so deleting the key here
                # keeps it out of both the database and the JSON answer.
                del token["refresh_token"]
        saved = super().save_bearer_token(token, request, *args, **kwargs)
        if isinstance(token.get("scope"), str):
            # DOT stores oauthlib's space-separated form (above); only the answer changes.
            token["scope"] = shape.scope_separator.join(token["scope"].split())
        return saved
