"""System checks for ``FRAMEIO_OAUTH``. The ids are stable; the README lists each one.

E001 no CLIENT_ID                     E005 non-https provider or redirect URL outside DEBUG
E002 no ENCRYPTION_KEYS               E006 unknown PROVIDER preset
E003 a malformed encryption key       W001 no offline scope: no refresh token will come back
E004 public client with PKCE off      W002 unknown keys in FRAMEIO_OAUTH (a typo?)
                                      W003 ATOMIC_REQUESTS: no on-demand refresh inside views
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .conf import PRESETS, SETTING_NAME, conf
from .crypto import decode_key
from .exceptions import ImproperlyConfigured

OFFLINE_SCOPES = frozenset(preset.offline_scope for preset in PRESETS.values())


@register(Tags.security)
def check_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not isinstance(getattr(settings, SETTING_NAME, {}), dict):
        return [Error(f"{SETTING_NAME} must be a dict.", id="frameio_oauth.E000")]
    if conf.provider_name not in PRESETS:
        messages.append(
            Error(
                f"{SETTING_NAME}['PROVIDER'] is {conf.provider_name!r}.",
                hint=f"Use one of: {', '.join(sorted(PRESETS))}.",
                id="frameio_oauth.E006",
            )
        )
    if not conf.client_id:
        messages.append(
            Error(
                f"{SETTING_NAME}['CLIENT_ID'] is not set.",
                hint="Copy it from your Frame.io developer application.",
                id="frameio_oauth.E001",
            )
        )
    messages += _check_keys()
    if not OFFLINE_SCOPES & set(conf.scopes):
        messages.append(
            Warning(
                f"{SETTING_NAME}['SCOPES'] has no offline scope: the provider will not return "
                "a refresh token, so users must sign in again when the access token expires.",
                hint=f"Add {conf.preset.offline_scope!r} to SCOPES.",
                id="frameio_oauth.W001",
            )
        )
    if conf.is_public_client and not conf.pkce:
        messages.append(
            Error(
                "A public client (no CLIENT_SECRET) must use PKCE.",
                hint=f"Set {SETTING_NAME}['PKCE'] = True or configure CLIENT_SECRET.",
                id="frameio_oauth.E004",
            )
        )
    messages += _check_urls()
    atomic = [alias for alias, db in settings.DATABASES.items() if db.get("ATOMIC_REQUESTS")]
    if atomic:
        messages.append(
            Warning(
                f"ATOMIC_REQUESTS is on for {', '.join(atomic)}: frameio_oauth will not refresh "
                "a token inside a view's transaction (a rollback could restore a spent "
                "refresh token), so get_access_token there hands out the current token until "
                "it expires and then raises RefreshInsideTransaction.",
                hint="Run the Celery beat sweep, and mark views that must refresh on demand "
                "with @transaction.non_atomic_requests.",
                id="frameio_oauth.W003",
            )
        )
    unknown = conf.unknown_keys()
    if unknown:
        messages.append(
            Warning(
                f"{SETTING_NAME} has unknown keys: {', '.join(unknown)}.",
                hint="Check the spelling against the README's settings table.",
                id="frameio_oauth.W002",
            )
        )
    return messages


def _check_keys() -> list[CheckMessage]:
    keys = conf.encryption_keys
    if not keys:
        return [
            Error(
                f"{SETTING_NAME}['ENCRYPTION_KEYS'] is empty: tokens cannot be stored.",
                hint="Run `manage.py frameio_generate_key` and keep the key in a secret store.",
                id="frameio_oauth.E002",
            )
        ]
    messages: list[CheckMessage] = []
    for position, key in enumerate(keys):
        try:
            decode_key(key)
        except ImproperlyConfigured as exc:
            messages.append(
                Error(
                    f"{SETTING_NAME}['ENCRYPTION_KEYS'][{position}] is malformed: {exc}.",
                    hint="Keys are 32 random bytes, urlsafe base64: `frameio_generate_key`.",
                    id="frameio_oauth.E003",
                )
            )
    return messages


def _check_urls() -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    urls = {
        "AUTHORIZE_URL": conf.authorize_url,
        "TOKEN_URL": conf.token_url,
        "REVOKE_URL": conf.revoke_url,
        "USERINFO_URL": conf.userinfo_url,
    }
    if conf.redirect_uri:
        urls["REDIRECT_URI"] = conf.redirect_uri
    insecure = [name for name, url in urls.items() if urlsplit(url).scheme != "https"]
    if not insecure:
        return []
    return [
        Error(
            f"{SETTING_NAME} uses plain http outside DEBUG for: {', '.join(insecure)}.",
            hint="Tokens and codes travel over these URLs; use https.",
            id="frameio_oauth.E005",
        )
    ]
