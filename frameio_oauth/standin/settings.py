"""Settings of the local Frame.io stand-in: a Django project of its own, separate from the
client site. Every knob is an environment variable, read through :mod:`.config`."""

from __future__ import annotations

from .config import current

_config = current()
_shape = _config.mode.shape


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
    return bool(client_type != application_model.CLIENT_CONFIDENTIAL)


SECRET_KEY = _config.secret_key
DEBUG = _config.debug
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    # Before oauth2_provider so our consent template overrides DOT's.
    "frameio_oauth.standin.apps.StandinConfig",
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
ROOT_URLCONF = "frameio_oauth.standin.urls"
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
                "frameio_oauth.standin.views.standin_context",
            ]
        },
    }
]

# __main__ creates its folder.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _config.db_path,
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
    "SCOPES": dict(_shape.scopes),
    "DEFAULT_SCOPES": list(_shape.default_scopes),
    "ACCESS_TOKEN_EXPIRE_SECONDS": _config.access_token_seconds,
    "REFRESH_TOKEN_EXPIRE_SECONDS": _shape.refresh_token_seconds,
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
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": _config.send_iss,
    "OAUTH2_VALIDATOR_CLASS": "frameio_oauth.standin.oauth.StandinOAuth2Validator",
    "OAUTH2_BACKEND_CLASS": "frameio_oauth.standin.oauth.StandinOAuthLibCore",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        # Logs on stderr only: stdout carries nothing but the "ready" line.
        # django.server is the access log; django.request repeats each 4xx/5xx.
        "django.server": {"handlers": ["stderr"], "level": _config.log_level, "propagate": False},
        "django.request": {"handlers": ["stderr"], "level": _config.log_level, "propagate": False},
    },
}
