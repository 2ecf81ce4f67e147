"""System checks for ``FRAMEIO_OAUTH``, with stable ids (E000-E009, W001-W011); each one is
described, with its hint, in docs/checks.md."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import router
from django.urls import NoReverseMatch, reverse

from .conf import DEFAULT_PROVIDER, PRESETS, SETTING_NAME, conf, origin
from .crypto import decode_key
from .exceptions import SettingsError


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
    messages += _check_scopes()
    if conf.is_public_client and not conf.pkce:
        messages.append(
            Error(
                "A public client (no CLIENT_SECRET) must use PKCE.",
                hint=f"Set {SETTING_NAME}['PKCE'] = True or configure CLIENT_SECRET.",
                id="frameio_oauth.E004",
            )
        )
    if conf.has_empty_client_secret():
        messages.append(
            Warning(
                f"{SETTING_NAME}['CLIENT_SECRET'] is present but empty, so this site signs in "
                "as a public client (PKCE, no secret); a confidential client's sign-ins will "
                "then all fail with invalid_client.",
                hint="Check that the secret's environment variable reaches the settings, or "
                "leave the key out for a public client.",
                id="frameio_oauth.W006",
            )
        )
    messages += _check_urls()
    messages += _check_server()
    messages += _check_issuer()
    messages += _check_timing()
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
                hint="Check the spelling against the settings in docs/settings.md.",
                id="frameio_oauth.W002",
            )
        )
    return messages


@register(Tags.database)
def check_token_database(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    # Imported here: models need the app registry, which is ready when checks run.
    from .models import OAuthToken

    alias = router.db_for_write(OAuthToken)
    database: dict[str, Any] = settings.DATABASES.get(alias, {})
    if "sqlite3" not in str(database.get("ENGINE", "")):
        return []
    options: dict[str, Any] = database.get("OPTIONS") or {}
    mode = str(options.get("transaction_mode", "")).upper()
    if mode == "IMMEDIATE":
        return []
    return [
        Warning(
            f"Tokens are stored in SQLite database {alias!r} without transaction_mode "
            "IMMEDIATE. SQLite ignores select_for_update, so two refreshes of one token can "
            "both reach Frame.io, and the second spends a rotated refresh token twice, which "
            "can cost the user the grant.",
            hint=f"Set DATABASES[{alias!r}]['OPTIONS']['transaction_mode'] = 'IMMEDIATE'.",
            id="frameio_oauth.W007",
        )
    ]


@register(Tags.urls)
def check_callback_url(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    if conf.redirect_uri:
        return []
    try:
        reverse("frameio_oauth:callback")
    except NoReverseMatch:
        # A warning: a project that picks its URLconf per request (django-hosts) may well
        # serve the callback from one this check, which sees only ROOT_URLCONF, cannot read.
        return [
            Warning(
                "The frameio_oauth:callback URL cannot be reversed from ROOT_URLCONF; unless "
                "each request picks a URLconf that includes it, no sign-in can start.",
                hint='Add path("frameio/", include("frameio_oauth.urls")) to your URLconf, '
                f"or set {SETTING_NAME}['REDIRECT_URI'].",
                id="frameio_oauth.W008",
            )
        ]
    return []


def _check_scopes() -> list[CheckMessage]:
    scopes = _raw("SCOPES")
    if not (
        scopes is None
        or isinstance(scopes, str)
        or (
            isinstance(scopes, list | tuple)
            and all(isinstance(scope, str) and scope for scope in scopes)
        )
    ):
        return [
            Error(
                f"{SETTING_NAME}['SCOPES'] must be a list of scope names, not {scopes!r}.",
                hint=f"For example {list(conf.preset.scopes)!r}.",
                id="frameio_oauth.E007",
            )
        ]
    # The configured preset's own offline scope: the other preset's means nothing here, and
    # an unknown PROVIDER (E006) has none.
    offline = conf.preset.offline_scope
    if offline in conf.scopes or conf.provider_name not in PRESETS:
        return []
    if _public_client_on_adobe_ims():
        # Adobe gives such a client no refresh token whatever it asks for (W011): leaving the
        # scope out is how it says it expects none.
        return []
    return [
        Warning(
            f"{SETTING_NAME}['SCOPES'] has no {offline!r} scope: the provider will not return "
            "a refresh token, so users must sign in again when the access token expires.",
            hint=f"Add {offline!r} to SCOPES.",
            id="frameio_oauth.W001",
        )
    ]


# Where Adobe documents which of its credentials get refresh tokens (check W011).
ADOBE_CREDENTIAL_TYPES = (
    "https://developer.adobe.com/developer-console/docs/guides/authentication/"
    "UserAuthentication/implementation"
)


def _check_server() -> list[CheckMessage]:
    """The authorization server the token endpoint belongs to: a retired one (W010), and
    Adobe IMS for a client without a secret (W011)."""
    token_origin = origin(conf.token_url)
    messages: list[CheckMessage] = []
    for preset in PRESETS.values():
        ended = preset.end_of_support
        if ended is None or origin(preset.token_url) != token_origin:
            continue
        messages.append(
            Warning(
                f"{SETTING_NAME} signs in with Frame.io's legacy API ({token_origin}), whose "
                f"support Frame.io {'ended' if date.today() >= ended else 'ends'} on "
                f"{ended.isoformat()}; its grants cannot be converted to Frame.io V4.",
                hint=f"Switch to PROVIDER {DEFAULT_PROVIDER!r} (Frame.io V4 through Adobe "
                "IMS) with an OAuth Web App credential from the Adobe Developer Console; "
                "existing users are asked to connect again (docs: migrating).",
                id="frameio_oauth.W010",
            )
        )
    offline = conf.preset.offline_scope
    if _public_client_on_adobe_ims() and offline in conf.scopes:
        messages.append(
            Warning(
                f"{SETTING_NAME} has no CLIENT_SECRET and signs in with Adobe IMS: Adobe "
                "documents that Single-Page App and Native App credentials, the ones without "
                f"a secret, get no refresh tokens ({offline}), so tokens cannot be kept "
                "fresh and users sign in again when the access token expires.",
                hint="Use an OAuth Web App credential and set CLIENT_SECRET; or, to run without "
                f"refresh tokens, leave {offline!r} out of SCOPES. Adobe's credential types: "
                f"{ADOBE_CREDENTIAL_TYPES}",
                id="frameio_oauth.W011",
            )
        )
    return messages


def _public_client_on_adobe_ims() -> bool:
    host = urlsplit(conf.token_url).hostname or ""
    return conf.is_public_client and (host == "adobelogin.com" or host.endswith(".adobelogin.com"))


def _check_issuer() -> list[CheckMessage]:
    if not conf.authorize_url_overridden or conf.issuer is not None:
        return []
    return [
        Warning(
            f"{SETTING_NAME}['AUTHORIZE_URL'] sends users to another server than the "
            f"{conf.preset.name} preset's, and {SETTING_NAME}['ISSUER'] does not say which "
            "issuer that server is: an iss parameter on the callback (RFC 9207) cannot be "
            "checked, so an answer from another authorization server is not recognised.",
            hint=f"Set {SETTING_NAME}['ISSUER'] to the \"issuer\" in that server's "
            "/.well-known/openid-configuration (or oauth-authorization-server) metadata.",
            id="frameio_oauth.W009",
        )
    ]


def _check_timing() -> list[CheckMessage]:
    from .services import refresh_lead

    messages: list[CheckMessage] = []
    margin = _positive_seconds("REFRESH_MARGIN", lambda: conf.refresh_margin)
    if margin is None:
        messages.append(
            Error(
                f"{SETTING_NAME}['REFRESH_MARGIN'] must be a positive number of seconds, "
                f"not {_raw('REFRESH_MARGIN')!r}.",
                hint="Leave it out for the default, 300.",
                id="frameio_oauth.E008",
            )
        )
    elif refresh_lead(lifetime := conf.preset.access_token_lifetime, margin)[0] < margin:
        messages.append(
            Warning(
                f"{SETTING_NAME}['REFRESH_MARGIN'] ({margin:g} s) with its jitter reaches past "
                f"half of {conf.preset.name}'s access-token lifetime ({lifetime} s): tokens "
                "will be refreshed from half their lifetime on, not REFRESH_MARGIN before they "
                "expire.",
                hint="A few minutes is enough; the default is 300.",
                id="frameio_oauth.W004",
            )
        )
    timeout = _positive_seconds("HTTP_TIMEOUT", lambda: conf.http_timeout)
    if timeout is None:
        messages.append(
            Error(
                f"{SETTING_NAME}['HTTP_TIMEOUT'] must be a positive, finite number of seconds, "
                f"not {_raw('HTTP_TIMEOUT')!r}.",
                hint="Leave it out for the default, 10.",
                id="frameio_oauth.E009",
            )
        )
    else:
        messages += _check_task_limits(timeout)
    return messages


def _raw(key: str) -> Any:
    return getattr(settings, SETTING_NAME, {}).get(key)


def _positive_seconds(key: str, read: Callable[[], float]) -> float | None:
    """The setting as the app will use it, or None if it cannot be used (a crash at runtime)."""
    if isinstance(_raw(key), bool):
        return None
    try:
        value = float(read())
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _check_task_limits(timeout: float) -> list[CheckMessage]:
    # Imported late: tasks pulls in Celery. The limits are read from the tasks themselves, so
    # a project's CELERY_TASK_ANNOTATIONS count.
    from . import services, tasks

    worst_cases = [
        (tasks.refresh_token, services.worst_case_refresh_seconds(waits_for_lock=True)),
        (tasks.refresh_token_if_due, services.worst_case_refresh_seconds(waits_for_lock=False)),
    ]
    too_long = []
    for task, worst in worst_cases:
        limits = [limit for limit in (task.soft_time_limit, task.time_limit) if limit]
        if limits and worst >= min(limits):
            too_long.append(f"{task.name} (a run can take {worst:g} s; limit {min(limits):g} s)")
    if not too_long:
        return []
    return [
        Warning(
            f"{SETTING_NAME}['HTTP_TIMEOUT'] ({timeout:g} s) is too long for the Celery time "
            f"limit of {', '.join(too_long)}: a task stopped after Frame.io rotated the "
            "refresh token loses the new one, and the spent one can cost the user the grant.",
            hint="Lower HTTP_TIMEOUT, or raise the tasks' soft_time_limit and time_limit with "
            "CELERY_TASK_ANNOTATIONS (docs: operations, task time limits).",
            id="frameio_oauth.W005",
        )
    ]


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
        except SettingsError as exc:
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
