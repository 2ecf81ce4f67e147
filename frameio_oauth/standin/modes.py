"""The two Frame.io authorization servers the stand-in can play, and what differs between them.

Import-light on purpose (no Django, no django-oauth-toolkit): a client site's settings and a
test harness read the paths and the matching ``FRAMEIO_OAUTH`` entries from here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

DAY = 24 * 3600


class Mode(enum.Enum):
    """Which server the stand-in plays."""

    IMS = "ims"  # Frame.io V4 through Adobe IMS: the default
    LEGACY = "legacy"  # applications.frame.io, whose API Frame.io stopped supporting on 2026-12-01

    @property
    def shape(self) -> Shape:
        return SHAPES[self]


@dataclass(frozen=True)
class Shape:
    """Paths, scopes and lifetimes of one server, as the stand-in serves them."""

    mode: Mode
    label: str
    # The frameio_oauth preset a client site uses against this server.
    preset: str
    authorize_path: str
    token_path: str
    revoke_path: str
    userinfo_path: str
    # The key that wraps the user in the user-info answer, if any.
    userinfo_envelope: str | None
    # Scope name → the line the consent page shows for it.
    scopes: Mapping[str, str]
    # Granted when an authorization request names no scope.
    default_scopes: tuple[str, ...]
    # Any one of these earns a refresh token.
    offline_scopes: frozenset[str]
    # Any one of these lets an access token read the user info.
    userinfo_scopes: frozenset[str]
    # How the token endpoint writes the granted scopes in its answer.
    scope_separator: str
    access_token_seconds: int
    refresh_token_seconds: int


SHAPES: dict[Mode, Shape] = {
    Mode.IMS: Shape(
        mode=Mode.IMS,
        label="Frame.io V4 (Adobe IMS)",
        preset="adobe-ims",
        authorize_path="/ims/authorize/v2",
        token_path="/ims/token/v3",
        revoke_path="/ims/revoke",
        userinfo_path="/v4/me",
        userinfo_envelope="data",
        scopes={
            "openid": "Sign you in with your Adobe ID",
            "email": "Read your email address",
            "profile": "Read your basic profile",
            "offline_access": "Stay signed in (refresh token)",
            "additional_info.roles": "Read your roles",
        },
        default_scopes=("openid",),
        offline_scopes=frozenset({"offline_access"}),
        userinfo_scopes=frozenset({"openid"}),
        scope_separator=",",
        access_token_seconds=DAY,
        refresh_token_seconds=14 * DAY,
    ),
    Mode.LEGACY: Shape(
        mode=Mode.LEGACY,
        label="legacy Frame.io (applications.frame.io)",
        preset="frameio",
        authorize_path="/oauth2/auth",
        token_path="/oauth2/token",
        revoke_path="/oauth2/revoke",
        userinfo_path="/v2/me",
        userinfo_envelope=None,
        scopes={
            "account.read": "Read your Frame.io account",
            "offline": "Stay signed in (refresh token)",
            # applications.frame.io is an ORY Hydra server, which knows these two as well.
            "openid": "Sign you in",
            "offline_access": "Stay signed in (refresh token)",
        },
        default_scopes=("account.read",),
        offline_scopes=frozenset({"offline", "offline_access"}),
        userinfo_scopes=frozenset({"account.read", "openid"}),
        scope_separator=" ",
        access_token_seconds=3600,
        refresh_token_seconds=30 * DAY,
    ),
}


def client_settings(url: str, mode: Mode = Mode.IMS) -> dict[str, str]:
    """The ``FRAMEIO_OAUTH`` entries that point a client site at a stand-in running at ``url``
    in ``mode``: the preset, every endpoint, and the issuer it sends as ``iss`` when
    ``FRAMEIO_STANDIN_SEND_ISS`` is on. Add CLIENT_ID (and CLIENT_SECRET) and the keys."""
    base = url.rstrip("/")
    shape = mode.shape
    return {
        "PROVIDER": shape.preset,
        "AUTHORIZE_URL": base + shape.authorize_path,
        "TOKEN_URL": base + shape.token_path,
        "REVOKE_URL": base + shape.revoke_path,
        "USERINFO_URL": base + shape.userinfo_path,
        "ISSUER": base,
    }
