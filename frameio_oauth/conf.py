"""Typed, lazy access to the ``FRAMEIO_OAUTH`` settings dict.

Every property reads ``django.conf.settings`` when it is accessed, never at import time, so
``override_settings`` works everywhere. Validation lives in :mod:`frameio_oauth.checks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

SETTING_NAME = "FRAMEIO_OAUTH"


@dataclass(frozen=True)
class ProviderPreset:
    """What differs between Frame.io's two authorization servers."""

    name: str
    authorize_url: str
    token_url: str
    revoke_url: str
    userinfo_url: str
    scopes: tuple[str, ...]
    scope_separator: str
    offline_scope: str
    # Used when a token response leaves out ``expires_in``.
    access_token_lifetime: int
    # The key of the object that wraps the user in the user-info answer, if any.
    userinfo_envelope: str | None
    # The server's issuer identifier (RFC 8414), which an RFC 9207 ``iss`` on the callback
    # must equal; None where the server publishes none.
    issuer: str | None
    # The day its owner stopped supporting it (check W010), if it has.
    end_of_support: date | None = None

    @property
    def server(self) -> str:
        """The authorization server this preset's endpoints belong to (see
        :attr:`Conf.authorization_server`)."""
        return self.issuer or origin(self.token_url)


PRESETS: dict[str, ProviderPreset] = {
    "frameio": ProviderPreset(
        name="frameio",
        authorize_url="https://applications.frame.io/oauth2/auth",
        token_url="https://applications.frame.io/oauth2/token",
        # applications.frame.io is an ORY Hydra server; this is Hydra's RFC 7009 endpoint.
        revoke_url="https://applications.frame.io/oauth2/revoke",
        userinfo_url="https://api.frame.io/v2/me",
        scopes=("account.read", "offline"),
        scope_separator=" ",
        offline_scope="offline",
        access_token_lifetime=3600,
        userinfo_envelope=None,
        # Frame.io publishes no issuer for this Hydra server (its docs name only the
        # authorize and token URLs) and Hydra sends no iss: nothing to compare against.
        issuer=None,
        # Frame.io's migration notes (docs: migrating).
        end_of_support=date(2026, 12, 1),
    ),
    "adobe-ims": ProviderPreset(
        name="adobe-ims",
        authorize_url="https://ims-na1.adobelogin.com/ims/authorize/v2",
        token_url="https://ims-na1.adobelogin.com/ims/token/v3",
        revoke_url="https://ims-na1.adobelogin.com/ims/revoke",
        userinfo_url="https://api.frame.io/v4/me",
        scopes=("openid", "email", "profile", "offline_access", "additional_info.roles"),
        scope_separator=",",
        offline_scope="offline_access",
        access_token_lifetime=24 * 3600,
        userinfo_envelope="data",
        # Published at /ims/.well-known/openid-configuration (source: docs/security.md).
        issuer="https://ims-na1.adobelogin.com",
    ),
}

# Frame.io V4: what a site gets without a PROVIDER key.
DEFAULT_PROVIDER = "adobe-ims"

KNOWN_KEYS = frozenset(
    {
        "PROVIDER",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "PKCE",
        "SCOPES",
        "REDIRECT_URI",
        "AUTHORIZE_URL",
        "TOKEN_URL",
        "REVOKE_URL",
        "USERINFO_URL",
        "ENCRYPTION_KEYS",
        "REFRESH_MARGIN",
        "HTTP_TIMEOUT",
        "ALLOW_SIGNUP",
        "ISSUER",
        "LOGIN_ON_GET",
    }
)


class Conf:
    """Read-through view of ``settings.FRAMEIO_OAUTH``; instantiate once as ``conf``."""

    def _raw(self) -> dict[str, Any]:
        value = getattr(settings, SETTING_NAME, {})
        return value if isinstance(value, dict) else {}

    def _get(self, key: str, default: Any = None) -> Any:
        return self._raw().get(key, default)

    @property
    def provider_name(self) -> str:
        return str(self._get("PROVIDER", DEFAULT_PROVIDER))

    @property
    def preset(self) -> ProviderPreset:
        # An unknown name is reported by check E006; fall back so the rest stays readable.
        return PRESETS.get(self.provider_name, PRESETS[DEFAULT_PROVIDER])

    @property
    def client_id(self) -> str:
        return str(self._get("CLIENT_ID") or "")

    @property
    def client_secret(self) -> str | None:
        secret = self._get("CLIENT_SECRET")
        return str(secret) if secret else None

    @property
    def is_public_client(self) -> bool:
        return self.client_secret is None

    @property
    def pkce(self) -> bool:
        return bool(self._get("PKCE", True))

    @property
    def scopes(self) -> list[str]:
        scopes = self._get("SCOPES")
        if scopes is None:
            return list(self.preset.scopes)
        if isinstance(scopes, str):
            # One string as a provider writes it ("account.read offline", or IMS's
            # "openid,offline_access"): split it rather than into characters.
            return [scope for scope in re.split(r"[\s,]+", scopes) if scope]
        return list(scopes)

    @property
    def scope_string(self) -> str:
        return self.preset.scope_separator.join(self.scopes)

    @property
    def redirect_uri(self) -> str | None:
        value = self._get("REDIRECT_URI")
        return str(value) if value else None

    @property
    def authorize_url(self) -> str:
        return str(self._get("AUTHORIZE_URL") or self.preset.authorize_url)

    @property
    def authorize_url_overridden(self) -> bool:
        """AUTHORIZE_URL sends users to a server other than the preset's."""
        value = self._get("AUTHORIZE_URL")
        return bool(value) and str(value) != self.preset.authorize_url

    @property
    def issuer(self) -> str | None:
        """The issuer an ``iss`` on the callback must equal, or None if it is not known."""
        value = self._get("ISSUER")
        if value:
            return str(value)
        # The preset's issuer names the preset's server; users sent elsewhere come back from
        # a server whose issuer only the ISSUER setting can tell (check W009).
        if self.authorize_url_overridden:
            return None
        return self.preset.issuer

    @property
    def token_url(self) -> str:
        return str(self._get("TOKEN_URL") or self.preset.token_url)

    @property
    def authorization_server(self) -> str:
        """Which authorization server this site's tokens come from and go to, as each token row
        records it: ``ISSUER`` when set; the preset's issuer while the preset's own authorize
        and token endpoints are used; else the origin of ``TOKEN_URL`` (docs: security, "A
        token goes back only to its server")."""
        raw = self._raw()
        return _server_of(
            _text(raw.get("PROVIDER")) or DEFAULT_PROVIDER,
            _text(raw.get("ISSUER")),
            _text(raw.get("AUTHORIZE_URL")),
            _text(raw.get("TOKEN_URL")),
        )

    @property
    def revoke_url(self) -> str:
        return str(self._get("REVOKE_URL") or self.preset.revoke_url)

    @property
    def userinfo_url(self) -> str:
        return str(self._get("USERINFO_URL") or self.preset.userinfo_url)

    @property
    def encryption_keys(self) -> list[str]:
        keys = self._get("ENCRYPTION_KEYS") or []
        if isinstance(keys, str):
            keys = [keys]
        # os.environ.get() of an unset variable gives None: that is a missing key (E002), not
        # a malformed one.
        return [str(key) for key in keys if key]

    @property
    def refresh_margin(self) -> int:
        return int(self._get("REFRESH_MARGIN", 300))

    @property
    def http_timeout(self) -> float:
        return float(self._get("HTTP_TIMEOUT", 10))

    @property
    def allow_signup(self) -> bool:
        return bool(self._get("ALLOW_SIGNUP", False))

    @property
    def login_on_get(self) -> bool:
        """An anonymous visitor's GET of the start page starts a sign-in (never a connect)."""
        return bool(self._get("LOGIN_ON_GET", False))

    def has_empty_client_secret(self) -> bool:
        """CLIENT_SECRET is present but empty: an unset environment variable, most likely."""
        return "CLIENT_SECRET" in self._raw() and not self._get("CLIENT_SECRET")

    def unknown_keys(self) -> list[str]:
        return sorted(set(self._raw()) - KNOWN_KEYS)


conf = Conf()


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-case, without a default port or userinfo."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.netloc.rpartition("@")[2].lower()
    default_port = {"https": ":443", "http": ":80"}.get(scheme)
    if default_port and host.endswith(default_port):
        host = host.removesuffix(default_port)
    return f"{scheme}://{host}"


def _text(value: Any) -> str | None:
    return str(value) if value else None


@lru_cache(maxsize=16)
def _server_of(
    provider: str, issuer: str | None, authorize_url: str | None, token_url: str | None
) -> str:
    # Cached: get_access_token compares every row it hands out with this, and the settings
    # rarely change within a process.
    if issuer:
        return issuer
    preset = PRESETS.get(provider, PRESETS[DEFAULT_PROVIDER])
    moved = (authorize_url or preset.authorize_url) != preset.authorize_url or (
        token_url or preset.token_url
    ) != preset.token_url
    return origin(token_url or preset.token_url) if moved else preset.server
