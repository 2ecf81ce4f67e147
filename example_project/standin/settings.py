"""Settings for the local Frame.io stand-in (a separate Django project from the client site).

Every knob a demo or an end-to-end test may need is an environment variable; see README.md.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in {"", "0", "false", "no", "off"}


def _pkce_required(client_id: str) -> bool:
    # Frame.io requires PKCE from public clients only; confidential ones may still send it.
    # Imported here because settings load before the app registry is ready.
    from oauth2_provider.models import get_application_model

    application_model = get_application_model()
    client_type: str | None = (
        application_model.objects.filter(client_id=client_id)
        .values_list("client_type", flat=True)
        .first()
    )
    # Unknown clients get the strict answer; oauthlib rejects them anyway.
    return client_type != application_model.CLIENT_CONFIDENTIAL


# Fixed, not secret: this server only ever runs on loopback for demos and tests.
SECRET_KEY = os.environ.get(
    "FRAMEIO_STANDIN_SECRET_KEY", "standin-insecure-7f3c1d0e9b8a4c56a2e1f0d9c8b7a6e5"
)
DEBUG = _env_flag("FRAMEIO_STANDIN_DEBUG", True)
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    # Before oauth2_provider so our consent template overrides DOT's.
    "example_project.standin.apps.StandinConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "example_project.standin.urls"
WSGI_APPLICATION = None
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_default_db = REPO_ROOT / "var" / "standin.sqlite3"
STANDIN_DB_PATH = Path(os.environ.get("FRAMEIO_STANDIN_DB") or _default_db)
STANDIN_DB_PATH.parent.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": STANDIN_DB_PATH,
        # The server is threaded: take the write lock up front and wait for it, instead of
        # failing with "database is locked" when two token requests overlap.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The client site usually runs on the same hostname on another port, and cookies ignore the
# port: distinct names keep the two sessions from overwriting each other.
SESSION_COOKIE_NAME = "standin_sessionid"
CSRF_COOKIE_NAME = "standin_csrftoken"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True

OAUTH2_PROVIDER = {
    "SCOPES": {
        # Frame.io's legacy authorization server (applications.frame.io, ORY Hydra).
        "account.read": "Read your Frame.io account",
        "offline": "Stay signed in (refresh token)",
        # Adobe IMS, which fronts Frame.io V4.
        "openid": "Sign you in with your Adobe ID",
        "email": "Read your email address",
        "profile": "Read your basic profile",
        "offline_access": "Stay signed in (refresh token)",
        "additional_info.roles": "Read your roles",
    },
    "DEFAULT_SCOPES": ["account.read"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(
        os.environ.get("FRAMEIO_STANDIN_ACCESS_TOKEN_SECONDS", "3600")
    ),
    "REFRESH_TOKEN_EXPIRE_SECONDS": 30 * 24 * 3600,
    # Hydra's default code lifetime; DOT's 60 s is tight for a demo paused in a debugger.
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 600,
    # Like Frame.io: every refresh returns a new refresh token and retires the old one, and
    # replaying a retired one revokes the whole chain (access tokens included).
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "PKCE_REQUIRED": _pkce_required,
    # Frame.io only speaks the authorization-code flow; refuse the legacy grants and the
    # "plain" PKCE method outright instead of just warning about them.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    # RFC 9207: put iss (this server's URL, as the request reached it) on the authorization
    # response. Off by default, like both Frame.io servers; the end-to-end tests turn it on.
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": _env_flag("FRAMEIO_STANDIN_SEND_ISS", False),
    "OAUTH2_VALIDATOR_CLASS": "example_project.standin.oauth.StandinOAuth2Validator",
    "OAUTH2_BACKEND_CLASS": "example_project.standin.oauth.StandinOAuthLibCore",
}

_LOG_LEVEL = os.environ.get("FRAMEIO_STANDIN_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        # Logs on stderr only: stdout carries nothing but the "ready" line.
        # django.server is the access log; django.request repeats each 4xx/5xx.
        "django.server": {"handlers": ["stderr"], "level": _LOG_LEVEL, "propagate": False},
        "django.request": {"handlers": ["stderr"], "level": _LOG_LEVEL, "propagate": False},
    },
}
